//! The scores service: the generated `ScoresApi` trait, implemented.

use super::api::*;
use super::store;
use super::ScoresContext;
use crate::runtime::db::StoreError;
use crate::runtime::inbox::Receiver;
use crate::runtime::pagination::Window;
use crate::runtime::{Db, Problem};
use dropshot::{HttpResponseOk, RequestContext};
use taproom_client::scores::types;

pub enum ScoresImpl {}

type Rq = RequestContext<ScoresContext>;

/// `submission.graded` events, as scores takes them.
pub enum SubmissionGraded {}

impl Receiver for SubmissionGraded {
    type Event = types::Event;
    const TOPIC: &'static str = "submission.graded";
    fn id(event: &types::Event) -> uuid::Uuid {
        event.id
    }
    fn occurred_at(event: &types::Event) -> chrono::DateTime<chrono::Utc> {
        event.occurred_at
    }
    async fn take(db: &Db, event: &types::Event) -> Result<bool, StoreError> {
        store::take_event(db, event).await
    }
}

fn page(
    rqctx: &Rq,
    window: &Window,
    fetched: Result<Vec<types::Score>, StoreError>,
    key: fn(&types::Score) -> uuid::Uuid,
) -> Result<HttpResponseOk<types::ScorePage>, Problem> {
    let fetched = fetched.map_err(|e| e.problem(&rqctx.log, &rqctx.request_id, "score"))?;
    let (items, next_page_token) = window.page(fetched, key);
    Ok(HttpResponseOk(types::ScorePage {
        items,
        next_page_token,
    }))
}

impl ScoresApi for ScoresImpl {
    type Context = ScoresContext;

    async fn list_my_scores(
        rqctx: Rq,
        me: Authenticated,
        query: ValidatedQuery<ListMyScoresQuery>,
    ) -> Result<HttpResponseOk<types::ScorePage>, Problem> {
        let query = query.into_inner();
        let window = Window::of(query.page_token.as_deref(), query.limit, &rqctx.request_id)?;
        let fetched = store::of_user(&rqctx.context().db, me.user_id, &window).await;
        page(&rqctx, &window, fetched, |s| s.exercise_id)
    }

    async fn list_exercise_scores(
        rqctx: Rq,
        _admin: Admin,
        path: ValidatedPath<ListExerciseScoresPath>,
        query: ValidatedQuery<ListExerciseScoresQuery>,
    ) -> Result<HttpResponseOk<types::ScorePage>, Problem> {
        let query = query.into_inner();
        let window = Window::of(query.page_token.as_deref(), query.limit, &rqctx.request_id)?;
        let exercise = path.into_inner().exercise_id;
        let fetched = store::of_exercise(&rqctx.context().db, exercise, &window).await;
        page(&rqctx, &window, fetched, |s| s.user_id)
    }

    async fn receive_event(
        rqctx: Rq,
        _sender: EventSender,
        _signature: ValidatedHeaders<ReceiveEventHeaders>,
        body: ValidatedBody<types::Event>,
    ) -> Result<HttpResponseOk<types::EventReceipt>, Problem> {
        let event = body.into_inner();
        // Its signature was verified on the raw body, before it was parsed.
        let context = rqctx.context();
        let duplicate = context
            .state
            .inbox
            .receive::<SubmissionGraded>(&context.db, &rqctx.log, &rqctx.request_id, &event)
            .await?;
        Ok(HttpResponseOk(types::EventReceipt {
            id: event.id,
            duplicate,
        }))
    }
}
