//! The promotions service: the generated `PromotionsApi` trait, implemented.

use super::api::*;
use super::store;
use super::PromotionsContext;
use crate::runtime::auth;
use crate::runtime::db::StoreError;
use crate::runtime::http::created;
use crate::runtime::extract::Validators;
use crate::runtime::{Db, Problem};
use std::time::Duration;
use dropshot::{HttpResponseCreated, HttpResponseHeaders, HttpResponseOk, RequestContext};
use taproom_client::promotions::types;

pub enum PromotionsImpl {}

type Rq = RequestContext<PromotionsContext>;

fn store_problem(rqctx: &Rq, e: StoreError) -> Problem {
    e.problem(&rqctx.log, &rqctx.request_id, "promo code")
}

/// Whether `event` is older than the duplicate check remembers (`max_age`): its id may
/// have been pruned from `processed_events`, so taking it could count it twice (a
/// replay of a captured event, or one that waited longer than the settings allow).
fn too_old(event: &types::Event, max_age: Duration) -> bool {
    chrono::Duration::from_std(max_age)
        .ok()
        .and_then(|max| chrono::Utc::now().checked_sub_signed(max))
        .is_some_and(|oldest| event.occurred_at < oldest)
}

/// Takes an event from NATS (its signature already verified by the consumer): validated
/// like `receive_event`'s body. An event that can never be taken (not JSON, not an Event,
/// too old) is logged and dropped rather than redelivered forever; a store failure is an
/// error, so the message is delivered again.
pub async fn take_raw_event(
    db: &Db,
    validators: &Validators,
    max_age: Duration,
    payload: &[u8],
    log: &slog::Logger,
) -> anyhow::Result<()> {
    let value: serde_json::Value = match serde_json::from_slice(payload) {
        Ok(v) => v,
        Err(e) => {
            slog::error!(log, "dropping an event that is not JSON"; "error" => %e);
            return Ok(());
        }
    };
    let errors = validators.validate_body("receive_event", &value);
    let event: types::Event = match (errors.is_empty(), serde_json::from_value(value)) {
        (true, Ok(event)) => event,
        (_, result) => {
            slog::error!(log, "dropping an event that does not match the Event schema";
                "errors" => ?errors, "decode" => ?result.err().map(|e| e.to_string()));
            return Ok(());
        }
    };
    if too_old(&event, max_age) {
        slog::error!(log, "dropping an event older than the duplicate check (EVENT_DEDUP_RETENTION_SECS)";
            "event_id" => %event.id, "occurred_at" => %event.occurred_at);
        return Ok(());
    }
    let duplicate = store::take_event(db, &event)
        .await
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    slog::info!(log, "event taken"; "event_id" => %event.id, "duplicate" => duplicate);
    Ok(())
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
        if too_old(&event, context.state.dedup_retention) {
            return Err(Problem::new(
                422,
                "The event is older than this service remembers events for \
                 (EVENT_DEDUP_RETENTION_SECS); it is not taken.",
            )
            .request(&rqctx.request_id));
        }
        let duplicate = store::take_event(&rqctx.context().db, &event)
            .await
            .map_err(|e| store_problem(&rqctx, e))?;
        Ok(HttpResponseOk(types::EventReceipt {
            id: event.id,
            duplicate,
        }))
    }
}
