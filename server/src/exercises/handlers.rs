//! The exercises service: the generated `ExercisesApi` trait, implemented. Admins write
//! exercises; anyone signed in reads them (the tests only admins) and submits
//! solutions; each user sees only their own submissions (anyone else's are 404).

use super::api::*;
use super::store::{self, Changes, NewExercise};
use super::ExercisesContext;
use crate::runtime::db::StoreError;
use crate::runtime::http::{accepted, created};
use crate::runtime::pagination::Window;
use crate::runtime::Problem;
use dropshot::{
    HttpResponseAccepted, HttpResponseCreated, HttpResponseDeleted, HttpResponseHeaders,
    HttpResponseOk, RequestContext,
};
use taproom_client::exercises::types;

pub enum ExercisesImpl {}

type Rq = RequestContext<ExercisesContext>;

fn problem<'a>(rqctx: &'a Rq, what: &'static str) -> impl Fn(StoreError) -> Problem + 'a {
    move |e| e.problem(&rqctx.log, &rqctx.request_id, what)
}

/// An exercise as `caller` may see it: the tests are for admins only.
fn shown(mut exercise: types::Exercise, admin: bool) -> types::Exercise {
    if !admin {
        exercise.test_code = None;
    }
    exercise
}

/// Empty text means "none".
fn non_empty(text: Option<String>) -> Option<String> {
    text.filter(|t| !t.is_empty())
}

impl ExercisesApi for ExercisesImpl {
    type Context = ExercisesContext;

    async fn list_exercises(
        rqctx: Rq,
        me: Authenticated,
        query: ValidatedQuery<ListExercisesQuery>,
    ) -> Result<HttpResponseOk<types::ExercisePage>, Problem> {
        let query = query.into_inner();
        let window = Window::of(query.page_token.as_deref(), query.limit, &rqctx.request_id)?;
        let fetched = store::list_exercises(&rqctx.context().db, &window)
            .await
            .map_err(problem(&rqctx, "exercise"))?;
        let (items, next_page_token) = window.page(fetched, |e| e.id);
        Ok(HttpResponseOk(types::ExercisePage {
            items: items.into_iter().map(|e| shown(e, me.admin)).collect(),
            next_page_token,
        }))
    }

    async fn create_exercise(
        rqctx: Rq,
        _admin: Admin,
        body: ValidatedBody<types::CreateExercise>,
    ) -> Result<HttpResponseHeaders<HttpResponseCreated<types::Exercise>>, Problem> {
        let body = body.into_inner();
        let starter = non_empty(body.starter_code.map(|c| c.to_string()));
        let exercise = store::create_exercise(
            &rqctx.context().db,
            NewExercise {
                title: &body.title,
                statement: &body.statement,
                language: &body.language.to_string(),
                starter_code: starter.as_deref(),
                test_code: &body.test_code,
            },
        )
        .await
        .map_err(problem(&rqctx, "exercise"))?;
        Ok(created(format!("/v1/exercises/{}", exercise.id), exercise))
    }

    async fn get_exercise(
        rqctx: Rq,
        me: Authenticated,
        path: ValidatedPath<GetExercisePath>,
    ) -> Result<HttpResponseOk<types::Exercise>, Problem> {
        let exercise = store::get_exercise(&rqctx.context().db, path.into_inner().exercise_id)
            .await
            .map_err(problem(&rqctx, "exercise"))?;
        Ok(HttpResponseOk(shown(exercise, me.admin)))
    }

    async fn update_exercise(
        rqctx: Rq,
        _admin: Admin,
        path: ValidatedPath<UpdateExercisePath>,
        body: ValidatedBody<types::UpdateExercise>,
    ) -> Result<HttpResponseOk<types::Exercise>, Problem> {
        let body = body.into_inner();
        let changes = Changes {
            title: body.title.map(|t| t.to_string()),
            statement: body.statement.map(|s| s.to_string()),
            language: body.language.map(|l| l.to_string()),
            starter_code: body.starter_code.map(|c| non_empty(Some(c.to_string()))),
            test_code: body.test_code.map(|t| t.to_string()),
        };
        store::update_exercise(&rqctx.context().db, path.into_inner().exercise_id, changes)
            .await
            .map(HttpResponseOk)
            .map_err(problem(&rqctx, "exercise"))
    }

    async fn delete_exercise(
        rqctx: Rq,
        _admin: Admin,
        path: ValidatedPath<DeleteExercisePath>,
    ) -> Result<HttpResponseDeleted, Problem> {
        store::delete_exercise(&rqctx.context().db, path.into_inner().exercise_id)
            .await
            .map_err(problem(&rqctx, "exercise"))?;
        Ok(HttpResponseDeleted())
    }

    async fn list_submissions(
        rqctx: Rq,
        me: Authenticated,
        path: ValidatedPath<ListSubmissionsPath>,
        query: ValidatedQuery<ListSubmissionsQuery>,
    ) -> Result<HttpResponseOk<types::SubmissionPage>, Problem> {
        let query = query.into_inner();
        let window = Window::of(query.page_token.as_deref(), query.limit, &rqctx.request_id)?;
        let db = &rqctx.context().db;
        let exercise = path.into_inner().exercise_id;
        // An unknown exercise is 404, not an empty list.
        store::get_exercise(db, exercise)
            .await
            .map_err(problem(&rqctx, "exercise"))?;
        let fetched = store::list_submissions(db, me.user_id, exercise, &window)
            .await
            .map_err(problem(&rqctx, "submission"))?;
        let (items, next_page_token) = window.page(fetched, |s| s.id);
        Ok(HttpResponseOk(types::SubmissionPage {
            items,
            next_page_token,
        }))
    }

    async fn create_submission(
        rqctx: Rq,
        me: Authenticated,
        path: ValidatedPath<CreateSubmissionPath>,
        body: ValidatedBody<types::CreateSubmission>,
    ) -> Result<HttpResponseHeaders<HttpResponseAccepted<types::Submission>>, Problem> {
        let exercise = path.into_inner().exercise_id;
        let code = body.into_inner().code;
        let context = rqctx.context();
        let submission = store::create_submission(&context.db, me.user_id, exercise, &code)
            .await
            .map_err(problem(&rqctx, "exercise"))?;
        context.state.submitted();
        Ok(accepted(
            format!("/v1/exercises/{exercise}/submissions/{}", submission.id),
            submission,
        ))
    }

    async fn get_submission(
        rqctx: Rq,
        me: Authenticated,
        path: ValidatedPath<GetSubmissionPath>,
    ) -> Result<HttpResponseOk<types::Submission>, Problem> {
        let path = path.into_inner();
        store::get_submission(
            &rqctx.context().db,
            me.user_id,
            path.exercise_id,
            path.submission_id,
        )
        .await
        .map(HttpResponseOk)
        .map_err(problem(&rqctx, "submission"))
    }
}
