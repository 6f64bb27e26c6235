//! The scores service: the generated `ScoresApi` trait, implemented. Every
//! operation acts for the caller of its bearer token (the generated `Authenticated`
//! argument), on the caller's own scores only.

use super::api::*;
use super::store::{self, Changes};
use super::ScoresContext;
use crate::runtime::db::StoreError;
use crate::runtime::http::created;
use crate::runtime::pagination::Window;
use crate::runtime::Problem;
use dropshot::{
    HttpResponseCreated, HttpResponseDeleted, HttpResponseHeaders, HttpResponseOk, RequestContext,
};
use taproom_client::scores::types;

pub enum ScoresImpl {}

type Rq = RequestContext<ScoresContext>;

fn store_problem(rqctx: &Rq, e: StoreError) -> Problem {
    e.problem(&rqctx.log, &rqctx.request_id, "score")
}

impl ScoresApi for ScoresImpl {
    type Context = ScoresContext;

    async fn list_scores(
        rqctx: Rq,
        me: Authenticated,
        query: ValidatedQuery<ListScoresQuery>,
    ) -> Result<HttpResponseOk<types::ScorePage>, Problem> {
        let query = query.into_inner();
        let window = Window::of(query.page_token.as_deref(), query.limit, &rqctx.request_id)?;
        let fetched = store::list(&rqctx.context().db, me.user_id, &window)
            .await
            .map_err(|e| store_problem(&rqctx, e))?;
        let (items, next_page_token) = window.page(fetched, |i| i.id);
        Ok(HttpResponseOk(types::ScorePage {
            items,
            next_page_token,
        }))
    }

    async fn create_score(
        rqctx: Rq,
        me: Authenticated,
        body: ValidatedBody<types::CreateScore>,
    ) -> Result<HttpResponseHeaders<HttpResponseCreated<types::Score>>, Problem> {
        let body = body.into_inner();
        let notes = body.notes.map(|n| n.to_string()).filter(|n| !n.is_empty());
        let item = store::create(&rqctx.context().db, me.user_id, &body.title, notes.as_deref())
            .await
            .map_err(|e| store_problem(&rqctx, e))?;
        Ok(created(format!("/v1/scores/{}", item.id), item))
    }

    async fn get_score(
        rqctx: Rq,
        me: Authenticated,
        path: ValidatedPath<GetScorePath>,
    ) -> Result<HttpResponseOk<types::Score>, Problem> {
        store::get(&rqctx.context().db, me.user_id, path.into_inner().score_id)
            .await
            .map(HttpResponseOk)
            .map_err(|e| store_problem(&rqctx, e))
    }

    async fn update_score(
        rqctx: Rq,
        me: Authenticated,
        path: ValidatedPath<UpdateScorePath>,
        body: ValidatedBody<types::UpdateScore>,
    ) -> Result<HttpResponseOk<types::Score>, Problem> {
        let body = body.into_inner();
        let changes = Changes {
            title: body.title.map(|t| t.to_string()),
            // Sent but empty: remove the notes.
            notes: body
                .notes
                .map(|n| Some(n.to_string()).filter(|n| !n.is_empty())),
        };
        let id = path.into_inner().score_id;
        store::update(&rqctx.context().db, me.user_id, id, changes)
            .await
            .map(HttpResponseOk)
            .map_err(|e| store_problem(&rqctx, e))
    }

    async fn delete_score(
        rqctx: Rq,
        me: Authenticated,
        path: ValidatedPath<DeleteScorePath>,
    ) -> Result<HttpResponseDeleted, Problem> {
        store::delete(&rqctx.context().db, me.user_id, path.into_inner().score_id)
            .await
            .map_err(|e| store_problem(&rqctx, e))?;
        Ok(HttpResponseDeleted())
    }
}
