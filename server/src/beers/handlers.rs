//! The beers service: the generated `BeersApi` trait, implemented. Reads are public and
//! carry ETags; changes are for admins and honour `If-Match`.

use super::api::*;
use super::store::{self, Changes, NewBeer};
use super::BeersContext;
use crate::runtime::db::StoreError;
use crate::runtime::http::created;
use crate::runtime::pagination::Window;
use crate::runtime::{etag, money, FieldError, Problem};
use dropshot::{
    HttpResponseCreated, HttpResponseDeleted, HttpResponseHeaders, HttpResponseOk, RequestContext,
};
use taproom_client::beers::types;
use uuid::Uuid;

pub enum BeersImpl {}

fn store_problem(rqctx: &RequestContext<BeersContext>, e: StoreError) -> Problem {
    e.problem(&rqctx.log, &rqctx.request_id, "beer")
}

/// Cents from a price the schema has already checked; a 400 naming `pointer` if not.
fn cents(rqctx: &RequestContext<BeersContext>, price: &str) -> Result<i64, Problem> {
    money::parse_cents(price).ok_or_else(|| {
        Problem::validation(vec![FieldError {
            pointer: "/price".into(),
            message: "must be a decimal with two places, 0.01 to 999999.99".into(),
        }])
        .request(&rqctx.request_id)
    })
}

/// Empty text means "remove it".
fn non_empty(text: String) -> Option<String> {
    (!text.is_empty()).then_some(text)
}

/// The version to write against: that of the current representation, when `If-Match`
/// names it (else 412); none when there is no `If-Match`.
async fn precondition(
    rqctx: &RequestContext<BeersContext>,
    id: Uuid,
    if_match: Option<&str>,
) -> Result<Option<i64>, Problem> {
    let Some(if_match) = if_match else {
        return Ok(None);
    };
    let current = store::get(&rqctx.context().db, id)
        .await
        .map_err(|e| store_problem(rqctx, e))?;
    etag::check_if_match(Some(if_match), &etag::of(&current.beer))
        .map_err(|p| p.request(&rqctx.request_id))?;
    Ok(Some(current.version))
}

fn stale(rqctx: &RequestContext<BeersContext>) -> Problem {
    etag::precondition_failed().request(&rqctx.request_id)
}

impl BeersApi for BeersImpl {
    type Context = BeersContext;

    async fn list_beers(
        rqctx: RequestContext<BeersContext>,
        query: ValidatedQuery<ListBeersQuery>,
        // If-None-Match is answered by the response hook from the ETag set here.
        _headers: ValidatedHeaders<ListBeersHeaders>,
    ) -> Result<HttpResponseHeaders<HttpResponseOk<types::BeerPage>>, Problem> {
        let query = query.into_inner();
        let window = Window::of(query.page_token.as_deref(), query.limit, &rqctx.request_id)?;
        let fetched = store::list(&rqctx.context().db, query.q.as_deref(), &window)
            .await
            .map_err(|e| store_problem(&rqctx, e))?;
        let (items, next_page_token) = window.page(fetched, |b| b.id);
        Ok(etag::ok(types::BeerPage {
            items,
            next_page_token,
        }))
    }

    async fn create_beer(
        rqctx: RequestContext<BeersContext>,
        _admin: Admin,
        body: ValidatedBody<types::CreateBeer>,
    ) -> Result<HttpResponseHeaders<HttpResponseCreated<types::Beer>>, Problem> {
        let body = body.into_inner();
        let new = NewBeer {
            price_cents: cents(&rqctx, &body.price)?,
            sku: body.sku.to_string(),
            name: body.name.to_string(),
            style: body.style.map(|s| s.to_string()),
            image_url: body.image_url.map(|u| u.to_string()),
        };
        let beer = store::create(&rqctx.context().db, new)
            .await
            .map_err(|e| store_problem(&rqctx, e))?;
        Ok(created(format!("/v1/beers/{}", beer.id), beer))
    }

    async fn get_beer(
        rqctx: RequestContext<BeersContext>,
        path: ValidatedPath<GetBeerPath>,
        // If-None-Match is answered by the response hook from the ETag set here.
        _headers: ValidatedHeaders<GetBeerHeaders>,
    ) -> Result<HttpResponseHeaders<HttpResponseOk<types::Beer>>, Problem> {
        let stored = store::get(&rqctx.context().db, path.into_inner().beer_id)
            .await
            .map_err(|e| store_problem(&rqctx, e))?;
        Ok(etag::ok(stored.beer))
    }

    async fn update_beer(
        rqctx: RequestContext<BeersContext>,
        _admin: Admin,
        path: ValidatedPath<UpdateBeerPath>,
        headers: ValidatedHeaders<UpdateBeerHeaders>,
        body: ValidatedBody<types::UpdateBeer>,
    ) -> Result<HttpResponseHeaders<HttpResponseOk<types::Beer>>, Problem> {
        let id = path.into_inner().beer_id;
        let body = body.into_inner();
        let changes = Changes {
            price_cents: body.price.map(|p| cents(&rqctx, &p)).transpose()?,
            sku: body.sku.map(|s| s.to_string()),
            name: body.name.map(|n| n.to_string()),
            style: body.style.map(|s| non_empty(s.to_string())),
            image_url: body.image_url.map(|u| non_empty(u.to_string())),
        };
        let version = precondition(&rqctx, id, headers.into_inner().if_match.as_deref()).await?;
        let stored = store::update(&rqctx.context().db, id, version, changes)
            .await
            .map_err(|e| store_problem(&rqctx, e))?
            .ok_or_else(|| stale(&rqctx))?;
        Ok(etag::ok(stored.beer))
    }

    async fn delete_beer(
        rqctx: RequestContext<BeersContext>,
        _admin: Admin,
        path: ValidatedPath<DeleteBeerPath>,
        headers: ValidatedHeaders<DeleteBeerHeaders>,
    ) -> Result<HttpResponseDeleted, Problem> {
        let id = path.into_inner().beer_id;
        let version = precondition(&rqctx, id, headers.into_inner().if_match.as_deref()).await?;
        let deleted = store::delete(&rqctx.context().db, id, version)
            .await
            .map_err(|e| store_problem(&rqctx, e))?;
        if !deleted {
            return Err(stale(&rqctx));
        }
        Ok(HttpResponseDeleted())
    }
}
