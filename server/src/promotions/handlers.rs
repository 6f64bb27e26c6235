//! The promotions service: the generated `PromotionsApi` trait, implemented.

use super::api::*;
use super::store;
use super::PromotionsContext;
use crate::runtime::auth;
use crate::runtime::db::StoreError;
use crate::runtime::http::created;
use crate::runtime::inbox::Receiver;
use crate::runtime::{Db, Problem};
use dropshot::{HttpResponseCreated, HttpResponseHeaders, HttpResponseOk, RequestContext};
use taproom_client::promotions::types;

pub enum PromotionsImpl {}

type Rq = RequestContext<PromotionsContext>;

fn store_problem(rqctx: &Rq, e: StoreError) -> Problem {
    e.problem(&rqctx.log, &rqctx.request_id, "promo code")
}

/// `order.placed` events, as promotions takes them.
pub enum OrderPlaced {}

impl Receiver for OrderPlaced {
    type Event = types::Event;
    const TOPIC: &'static str = "order.placed";
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

impl PromotionsApi for PromotionsImpl {
    type Context = PromotionsContext;

    async fn create_promotion(
        rqctx: Rq,
        _admin: Admin,
        body: ValidatedBody<types::CreatePromotion>,
    ) -> Result<HttpResponseHeaders<HttpResponseCreated<types::Promotion>>, Problem> {
        let body = body.into_inner();
        let max_uses = body.max_uses_per_user.get();
        let promotion = store::create(
            &rqctx.context().db,
            &body.code,
            body.percent_off.get(),
            max_uses,
        )
        .await
        .map_err(|e| store_problem(&rqctx, e))?;
        Ok(created(
            format!("/v1/promotions/{}", promotion.code),
            promotion,
        ))
    }

    async fn get_promotion(
        rqctx: Rq,
        _caller: Admin,
        path: ValidatedPath<GetPromotionPath>,
    ) -> Result<HttpResponseOk<types::Promotion>, Problem> {
        store::get(&rqctx.context().db, &path.into_inner().code)
            .await
            .map(HttpResponseOk)
            .map_err(|e| store_problem(&rqctx, e))
    }

    async fn check_eligibility(
        rqctx: Rq,
        me: Authenticated,
        path: ValidatedPath<CheckEligibilityPath>,
        query: ValidatedQuery<CheckEligibilityQuery>,
    ) -> Result<HttpResponseOk<types::Eligibility>, Problem> {
        let user_id = query.into_inner().user_id.unwrap_or(me.user_id);
        if !me.may_act_for(user_id) {
            return Err(auth::forbidden(
                &rqctx.request_id,
                "Only admins may ask about someone else's eligibility.",
            ));
        }
        let db = &rqctx.context().db;
        let code = path.into_inner().code;
        let promotion = store::get(db, &code)
            .await
            .map_err(|e| store_problem(&rqctx, e))?;
        let uses = store::uses(db, &code, user_id)
            .await
            .map_err(|e| store_problem(&rqctx, e))?;
        Ok(HttpResponseOk(types::Eligibility {
            code: promotion.code,
            user_id,
            eligible: uses < promotion.max_uses_per_user,
            uses,
            max_uses: promotion.max_uses_per_user,
            percent_off: promotion.percent_off,
        }))
    }

    async fn receive_event(
        rqctx: Rq,
        _sender: EventSender,
        _signature: ValidatedHeaders<ReceiveEventHeaders>,
        body: ValidatedBody<types::Event>,
    ) -> Result<HttpResponseOk<types::EventReceipt>, Problem> {
        let event = body.into_inner();
        // Its signature was verified on the raw body, before it was parsed (the
        // extractor does so for every eventsAuth operation).
        let context = rqctx.context();
        let duplicate = context
            .state
            .inbox
            .receive::<OrderPlaced>(&context.db, &rqctx.log, &rqctx.request_id, &event)
            .await?;
        Ok(HttpResponseOk(types::EventReceipt {
            id: event.id,
            duplicate,
        }))
    }
}
