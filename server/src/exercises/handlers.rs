//! The exercises service: the generated `ExercisesApi` trait, implemented. Every
//! operation acts for the caller of its bearer token (the generated `Authenticated`
//! argument), on the caller's own exercises only.

use super::api::*;
use super::store::{self, Changes};
use super::ExercisesContext;
use crate::runtime::db::StoreError;
use crate::runtime::http::created;
use crate::runtime::pagination::Window;
use crate::runtime::Problem;
use dropshot::{
    HttpResponseCreated, HttpResponseDeleted, HttpResponseHeaders, HttpResponseOk, RequestContext,
};
use taproom_client::exercises::types;

pub enum ExercisesImpl {}

type Rq = RequestContext<ExercisesContext>;

fn store_problem(rqctx: &Rq, e: StoreError) -> Problem {
    e.problem(&rqctx.log, &rqctx.request_id, "exercise")
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
        let fetched = store::list(&rqctx.context().db, me.user_id, &window)
            .await
            .map_err(|e| store_problem(&rqctx, e))?;
        let (items, next_page_token) = window.page(fetched, |i| i.id);
        Ok(HttpResponseOk(types::ExercisePage {
            items,
            next_page_token,
        }))
    }

    async fn create_exercise(
        rqctx: Rq,
        me: Authenticated,
        body: ValidatedBody<types::CreateExercise>,
    ) -> Result<HttpResponseHeaders<HttpResponseCreated<types::Exercise>>, Problem> {
        let body = body.into_inner();
        let notes = body.notes.map(|n| n.to_string()).filter(|n| !n.is_empty());
        let item = store::create(&rqctx.context().db, me.user_id, &body.title, notes.as_deref())
            .await
            .map_err(|e| store_problem(&rqctx, e))?;
        Ok(created(format!("/v1/exercises/{}", item.id), item))
    }

    async fn get_exercise(
        rqctx: Rq,
        me: Authenticated,
        path: ValidatedPath<GetExercisePath>,
    ) -> Result<HttpResponseOk<types::Exercise>, Problem> {
        store::get(&rqctx.context().db, me.user_id, path.into_inner().exercise_id)
            .await
            .map(HttpResponseOk)
            .map_err(|e| store_problem(&rqctx, e))
    }

    async fn update_exercise(
        rqctx: Rq,
        me: Authenticated,
        path: ValidatedPath<UpdateExercisePath>,
        body: ValidatedBody<types::UpdateExercise>,
    ) -> Result<HttpResponseOk<types::Exercise>, Problem> {
        let body = body.into_inner();
        let changes = Changes {
            title: body.title.map(|t| t.to_string()),
            // Sent but empty: remove the notes.
            notes: body
                .notes
                .map(|n| Some(n.to_string()).filter(|n| !n.is_empty())),
        };
        let id = path.into_inner().exercise_id;
        store::update(&rqctx.context().db, me.user_id, id, changes)
            .await
            .map(HttpResponseOk)
            .map_err(|e| store_problem(&rqctx, e))
    }

    async fn delete_exercise(
        rqctx: Rq,
        me: Authenticated,
        path: ValidatedPath<DeleteExercisePath>,
    ) -> Result<HttpResponseDeleted, Problem> {
        store::delete(&rqctx.context().db, me.user_id, path.into_inner().exercise_id)
            .await
            .map_err(|e| store_problem(&rqctx, e))?;
        Ok(HttpResponseDeleted())
    }
}
