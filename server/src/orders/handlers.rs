//! The orders service: the generated `OrdersApi` trait, implemented. A user sees and
//! changes only their own orders (an admin, anyone's); anyone else's is 404.

use super::api::*;
use super::store::{self, CheckoutRefused, KeyRecord, Promo, Refused, Snapshot};
use super::OrdersContext;
use crate::runtime::auth::{self, Caller};
use crate::runtime::db::StoreError;
use crate::runtime::http::created;
use crate::runtime::pagination::Window;
use crate::runtime::{etag, money, FieldError, Problem};
use dropshot::{HttpResponseCreated, HttpResponseHeaders, HttpResponseOk, RequestContext};
use taproom_client::orders::types;
use taproom_client::CallContext;
use uuid::Uuid;

pub enum OrdersImpl {}

type Rq = RequestContext<OrdersContext>;

fn store_problem(rqctx: &Rq, e: StoreError) -> Problem {
    e.problem(&rqctx.log, &rqctx.request_id, "order")
}

fn refused(rqctx: &Rq, r: Refused) -> Problem {
    match r {
        Refused::NotFound => store_problem(rqctx, StoreError::NotFound),
        Refused::Closed => Problem::conflict("The order is checked out; it cannot change.")
            .request(&rqctx.request_id),
        Refused::Store(e) => store_problem(rqctx, e),
    }
}

fn unprocessable(rqctx: &Rq, detail: impl Into<String>) -> Problem {
    Problem::new(422, detail).request(&rqctx.request_id)
}

/// The order, if the caller may see it (their own, or any for an admin); else 404.
async fn visible_order(rqctx: &Rq, me: &Caller, id: Uuid) -> Result<types::Order, Problem> {
    let order = store::get(&rqctx.context().db, id)
        .await
        .map_err(|e| store_problem(rqctx, e))?;
    if !me.may_act_for(order.user_id) {
        return Err(store_problem(rqctx, StoreError::NotFound));
    }
    Ok(order)
}

/// The order after a change, as the caller now sees it.
async fn reread(rqctx: &Rq, id: Uuid) -> Result<HttpResponseOk<types::Order>, Problem> {
    store::get(&rqctx.context().db, id)
        .await
        .map(HttpResponseOk)
        .map_err(|e| store_problem(rqctx, e))
}

/// 503 for a service this request needs that did not answer in time; logged.
fn unavailable(rqctx: &Rq, what: &str, why: &dyn std::fmt::Display) -> Problem {
    slog::warn!(rqctx.log, "service call failed"; "service" => what, "error" => %why);
    Problem::unavailable(format!(
        "{what} cannot be reached right now; nothing was changed. Retry shortly."
    ))
    .request(&rqctx.request_id)
    .header(http::header::RETRY_AFTER, "5")
}

/// The call context that carries this request's caller and id to other services.
fn on_behalf(rqctx: &Rq) -> CallContext {
    CallContext {
        bearer_token: auth::bearer_token(rqctx),
        request_id: Some(rqctx.request_id.clone()),
    }
}

/// The promo code's terms for the order's user, as promotions has them. Unknown or used
/// up: 422. Promotions unreachable: 503.
async fn promo_terms(rqctx: &Rq, code: &str, user_id: Uuid) -> Result<(u32, u32), Problem> {
    use taproom_client::promotions::Error;
    let promotions = &rqctx.context().state.promotions;
    let asked = on_behalf(rqctx)
        .scope(
            promotions
                .check_eligibility()
                .code(code)
                .user_id(user_id)
                .send(),
        )
        .await;
    let eligibility = match asked {
        Ok(e) => e.into_inner(),
        Err(Error::ErrorResponse(r)) if r.status() == 404 => {
            return Err(unprocessable(
                rqctx,
                format!("There is no promo code {code}."),
            ));
        }
        Err(e) => return Err(unavailable(rqctx, "The promotions service", &e)),
    };
    if !eligibility.eligible {
        return Err(unprocessable(
            rqctx,
            format!(
                "Promo code {code} has been used the most times it allows ({}).",
                eligibility.max_uses
            ),
        ));
    }
    Ok((eligibility.percent_off, eligibility.max_uses))
}

/// The beer as the catalogue has it now, asked on the caller's behalf (their token and
/// this request's id go along). Unknown beer: 422. Catalogue unreachable, slow or
/// failing: 503 with Retry-After.
async fn lookup_beer(rqctx: &Rq, beer_id: Uuid) -> Result<Snapshot, Problem> {
    use taproom_client::beers::Error;
    let beers = &rqctx.context().state.beers;
    let result = on_behalf(rqctx)
        .scope(beers.get_beer().beer_id(beer_id).send())
        .await;
    let unavailable = |why: &dyn std::fmt::Display| unavailable(rqctx, "The catalogue", why);
    let beer = match result {
        Ok(beer) => beer.into_inner(),
        Err(Error::ErrorResponse(response)) if response.status() == 404 => {
            return Err(
                Problem::new(422, format!("There is no beer {beer_id} in the catalogue."))
                    .request(&rqctx.request_id),
            );
        }
        Err(e) => return Err(unavailable(&e)),
    };
    let unit_price_cents = money::parse_cents(&beer.price)
        .ok_or_else(|| unavailable(&format!("beer {beer_id} has price {:?}", beer.price)))?;
    Ok(Snapshot {
        beer_id,
        sku: beer.sku,
        name: beer.name,
        unit_price_cents,
    })
}

/// The first answer to this idempotency key, if one was stored for the same request; 422
/// if the key was used for a different one.
async fn replay(
    rqctx: &Rq,
    user_id: Uuid,
    key: Option<&str>,
    fingerprint: &str,
) -> Result<Option<HttpResponseOk<types::Order>>, Problem> {
    let Some(key) = key else {
        return Ok(None);
    };
    let context = rqctx.context();
    match store::replay(&context.db, user_id, key, context.state.idempotency_retention)
        .await
        .map_err(|e| store_problem(rqctx, e))?
    {
        Some(first) if first.fingerprint == fingerprint => serde_json::from_str(&first.response)
            .map(|order| Some(HttpResponseOk(order)))
            .map_err(|e| Problem::internal(&rqctx.log, &e)),
        Some(_) => Err(unprocessable(
            rqctx,
            "This Idempotency-Key was used for a different request; use a new key.",
        )),
        None => Ok(None),
    }
}

impl OrdersApi for OrdersImpl {
    type Context = OrdersContext;

    async fn create_order(
        rqctx: Rq,
        me: Authenticated,
    ) -> Result<HttpResponseHeaders<HttpResponseCreated<types::Order>>, Problem> {
        let order = store::create(&rqctx.context().db, me.user_id)
            .await
            .map_err(|e| store_problem(&rqctx, e))?;
        Ok(created(format!("/v1/orders/{}", order.id), order))
    }

    async fn list_orders(
        rqctx: Rq,
        me: Authenticated,
        query: ValidatedQuery<ListOrdersQuery>,
    ) -> Result<HttpResponseOk<types::OrderPage>, Problem> {
        let query = query.into_inner();
        let window = Window::of(query.page_token.as_deref(), query.limit, &rqctx.request_id)?;
        let user = (!me.admin).then_some(me.user_id);
        let status = query.status.map(|s| s.to_string());
        let fetched = store::list(&rqctx.context().db, user, status.as_deref(), &window)
            .await
            .map_err(|e| store_problem(&rqctx, e))?;
        let (items, next_page_token) = window.page(fetched, |o| o.id);
        Ok(HttpResponseOk(types::OrderPage {
            items,
            next_page_token,
        }))
    }

    async fn get_order(
        rqctx: Rq,
        me: Authenticated,
        path: ValidatedPath<GetOrderPath>,
    ) -> Result<HttpResponseOk<types::Order>, Problem> {
        visible_order(&rqctx, &me, path.into_inner().order_id)
            .await
            .map(HttpResponseOk)
    }

    async fn add_order_item(
        rqctx: Rq,
        me: Authenticated,
        path: ValidatedPath<AddOrderItemPath>,
        body: ValidatedBody<types::AddItem>,
    ) -> Result<HttpResponseOk<types::Order>, Problem> {
        let id = path.into_inner().order_id;
        let body = body.into_inner();
        let order = visible_order(&rqctx, &me, id).await?;
        if order.status == types::OrderStatus::Closed {
            // Before asking the catalogue: the answer cannot change.
            return Err(refused(&rqctx, Refused::Closed));
        }
        let beer = lookup_beer(&rqctx, body.beer_id).await?;
        let added = store::add_item(&rqctx.context().db, id, &beer, body.quantity.get())
            .await
            .map_err(|r| refused(&rqctx, r))?;
        if !added {
            return Err(unprocessable(
                &rqctx,
                "An order holds at most 100 of one beer.",
            ));
        }
        reread(&rqctx, id).await
    }

    async fn remove_order_item(
        rqctx: Rq,
        me: Authenticated,
        path: ValidatedPath<RemoveOrderItemPath>,
    ) -> Result<HttpResponseOk<types::Order>, Problem> {
        let path = path.into_inner();
        visible_order(&rqctx, &me, path.order_id).await?;
        let removed = store::remove_item(&rqctx.context().db, path.order_id, path.beer_id)
            .await
            .map_err(|r| refused(&rqctx, r))?;
        if !removed {
            return Err(
                Problem::not_found("That beer is not in this order.").request(&rqctx.request_id)
            );
        }
        reread(&rqctx, path.order_id).await
    }

    async fn checkout_order(
        rqctx: Rq,
        me: Authenticated,
        path: ValidatedPath<CheckoutOrderPath>,
        headers: ValidatedHeaders<CheckoutOrderHeaders>,
        body: OptionalBody<types::Checkout>,
    ) -> Result<HttpResponseOk<types::Order>, Problem> {
        let id = path.into_inner().order_id;
        let body = body.into_inner().unwrap_or_default();
        let key = headers.into_inner().idempotency_key;
        // What the request asks, whatever the JSON spelling: the same key must not be
        // reused for anything else.
        let fingerprint = etag::of(&(id, &body));
        if let Some(first) = replay(&rqctx, me.user_id, key.as_deref(), &fingerprint).await? {
            return Ok(first);
        }
        let order = visible_order(&rqctx, &me, id).await?;
        if order.status == types::OrderStatus::Closed {
            // Closed by a concurrent request with this key, perhaps: its answer is ours.
            return match replay(&rqctx, me.user_id, key.as_deref(), &fingerprint).await? {
                Some(first) => Ok(first),
                None => Err(refused(&rqctx, Refused::Closed)),
            };
        }
        let terms = match body.promo_code.as_deref() {
            Some(code) => Some(promo_terms(&rqctx, code, order.user_id).await?),
            None => None,
        };
        let promo = body
            .promo_code
            .as_deref()
            .zip(terms)
            .map(|(code, (percent_off, max_uses))| Promo {
                code,
                percent_off,
                max_uses,
            });
        let expected_total = match &body.expected_total {
            Some(total) => Some(money::parse_cents(total).ok_or_else(|| {
                Problem::validation(vec![FieldError {
                    pointer: "/expected_total".into(),
                    message: "must be a decimal with two places".into(),
                }])
                .request(&rqctx.request_id)
            })?),
            None => None,
        };
        let record = key.as_deref().map(|key| KeyRecord {
            user_id: me.user_id,
            key,
            fingerprint: &fingerprint,
            keep: rqctx.context().state.idempotency_retention,
        });
        match store::checkout(&rqctx.context().db, id, expected_total, promo, record).await {
            Ok(order) => {
                rqctx.context().state.wake_relay();
                Ok(HttpResponseOk(order))
            }
            // A concurrent request with the same key got there first: its answer is ours.
            Err(CheckoutRefused::KeyTaken | CheckoutRefused::Order(Refused::Closed))
                if key.is_some() =>
            {
                match replay(&rqctx, me.user_id, key.as_deref(), &fingerprint).await? {
                    Some(first) => Ok(first),
                    None => Err(refused(&rqctx, Refused::Closed)),
                }
            }
            Err(CheckoutRefused::KeyTaken) => Err(refused(&rqctx, Refused::Closed)),
            Err(CheckoutRefused::Order(r)) => Err(refused(&rqctx, r)),
            Err(CheckoutRefused::PromoUsedUp) => Err(unprocessable(
                &rqctx,
                "This promo code has been used the most times it allows.",
            )),
            Err(CheckoutRefused::Empty) => Err(unprocessable(
                &rqctx,
                "The order is empty; add a beer before checking out.",
            )),
            Err(CheckoutRefused::TotalChanged(total)) => Err(Problem::conflict(format!(
                "The order's total is {total}, not the expected_total sent; review the order and retry."
            ))
            .request(&rqctx.request_id)),
        }
    }
}
