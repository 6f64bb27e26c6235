//! Security from the spec: what an operation's `security` requirement (and its `x-roles`)
//! says becomes an argument of the generated trait method, extracted before any other
//! argument (dropshot runs extractors in argument order; see vendor/dropshot/TAPROOM.md),
//! so a handler cannot forget the check and an anonymous caller learns nothing about a
//! protected operation's parameters or body. The 401 and 403 problems are made here and
//! nowhere else.
//!
//! | YAML                                     | argument                       |
//! |------------------------------------------|--------------------------------|
//! | `security: []`                           | none                           |
//! | `security: [{bearerAuth: []}]`           | `Authenticated<C>`             |
//! | the same with `x-roles: [admin]`         | `WithRole<C, role::Admin>`     |
//! | `security: [{eventsAuth: []}]`           | `EventSender<C>`               |
//! | `security: [{basicAuth: []}, {}]`        | `BasicCredentials` (optional)  |
//!
//! What depends on the data (your own order vs. someone else's: 404) stays in handlers.

use super::auth::{self, Caller, Rejection};
use super::extract::service_context;
use super::{Problem, ServiceContext};
use async_trait::async_trait;
use dropshot::{
    ApiEndpointBodyContentType, ExtractorMetadata, RequestContext, ServerContext, SharedExtractor,
};
use role::Role as _;
use std::marker::PhantomData;

/// No parameters in the served document: security is described by the YAML's
/// `security`, which the served document is (not a re-derivation).
fn no_parameters() -> ExtractorMetadata {
    ExtractorMetadata {
        extension_mode: dropshot::ExtensionMode::None,
        parameters: vec![],
    }
}

fn fail(rqctx_request_id: &str, problem: Problem) -> dropshot::HttpError {
    problem.request(rqctx_request_id).into_http_error()
}

/// The token of an `Authorization: Bearer` header: `Ok(None)` without the header, `Err`
/// for a header that is not a bearer token.
fn bearer<X: ServerContext>(rqctx: &RequestContext<X>) -> Result<Option<&str>, Problem> {
    let Some(header) = rqctx.request.headers().get(http::header::AUTHORIZATION) else {
        return Ok(None);
    };
    header
        .to_str()
        .ok()
        .and_then(auth::bearer_credentials)
        .map(Some)
        .ok_or_else(|| {
            auth::unauthorized(
                &rqctx.request_id,
                "the Authorization header is not a Bearer token",
                true,
            )
        })
}

/// The caller of a request, from its bearer token, checked with the service's keyring;
/// a refused token is counted (`tokens_refused_total`).
async fn verified_caller<C: ServiceContext, X: ServerContext>(
    rqctx: &RequestContext<X>,
) -> Result<Caller, dropshot::HttpError> {
    let result = checked_caller::<C, X>(rqctx).await;
    if let (Err(e), Ok(service)) = (&result, service_context::<C, X>(rqctx)) {
        if e.status_code.as_u16() == 401 {
            service.metrics().tokens_refused.inc();
        }
    }
    result
}

async fn checked_caller<C: ServiceContext, X: ServerContext>(
    rqctx: &RequestContext<X>,
) -> Result<Caller, dropshot::HttpError> {
    let service = service_context::<C, X>(rqctx)?;
    let rid = rqctx.request_id.as_str();
    let token = bearer(rqctx).map_err(|p| fail(rid, p))?.ok_or_else(|| {
        fail(
            rid,
            auth::unauthorized(rid, "send an `Authorization: Bearer <token>` header", false),
        )
    })?;
    let claims = service
        .keyring()
        .verify(token)
        .await
        .map_err(|rejection| match rejection {
            Rejection::Invalid(why) => fail(rid, auth::unauthorized(rid, why, true)),
            Rejection::KeysUnavailable => fail(
                rid,
                Problem::unavailable(
                    "Tokens cannot be checked right now: the users service's keys are unreachable.",
                )
                .header(http::header::RETRY_AFTER, "5"),
            ),
        })?;
    let user_id = uuid::Uuid::parse_str(&claims.sub)
        .map_err(|_| fail(rid, auth::unauthorized(rid, "the token is not valid", true)))?;
    let caller = Caller {
        user_id,
        admin: claims.role == role::Admin::NAME,
    };
    let Some(accounts) = service.accounts() else {
        return Ok(caller);
    };
    // The service that keeps the accounts acts on them as they are now: a deleted
    // account's token is refused, a demoted admin is not an admin any more.
    match accounts.current(&caller).await {
        Ok(Some(current)) => Ok(current),
        Ok(None) => Err(fail(
            rid,
            auth::unauthorized(rid, "the account no longer exists", true),
        )),
        Err(e) => Err(fail(rid, Problem::internal(&rqctx.log, &e))),
    }
}

/// Where a service keeps its callers' accounts (the users service): the security
/// extractors of that service check every caller against them, not only the token.
#[async_trait]
pub trait Accounts: Send + Sync {
    /// `caller` as stored now (their current role), or `None` when the account is gone.
    async fn current(&self, caller: &Caller) -> anyhow::Result<Option<Caller>>;
}

/// A caller with a valid bearer token (`security: [{bearerAuth: []}]`).
pub struct Authenticated<C>(Caller, PhantomData<fn() -> C>);

impl<C> Authenticated<C> {
    pub fn caller(&self) -> &Caller {
        &self.0
    }
}

impl<C> std::ops::Deref for Authenticated<C> {
    type Target = Caller;
    fn deref(&self) -> &Caller {
        &self.0
    }
}

#[async_trait]
impl<C: ServiceContext> SharedExtractor for Authenticated<C> {
    async fn from_request<X: ServerContext>(
        rqctx: &RequestContext<X>,
    ) -> Result<Self, dropshot::HttpError> {
        verified_caller::<C, X>(rqctx)
            .await
            .map(|caller| Authenticated(caller, PhantomData))
    }

    fn metadata(_: ApiEndpointBodyContentType) -> ExtractorMetadata {
        no_parameters()
    }
}

/// The roles an operation's `x-roles` may name.
pub mod role {
    /// A role a caller's token carries (`role` claim).
    pub trait Role: Send + Sync + 'static {
        const NAME: &'static str;
    }

    /// `x-roles: [admin]`.
    pub enum Admin {}

    impl Role for Admin {
        const NAME: &'static str = "admin";
    }
}

/// A caller with a valid bearer token and the role `R` (`x-roles: [R]`): others get 403.
pub struct WithRole<C, R>(Caller, PhantomData<fn() -> (C, R)>);

impl<C, R> std::ops::Deref for WithRole<C, R> {
    type Target = Caller;
    fn deref(&self) -> &Caller {
        &self.0
    }
}

#[async_trait]
impl<C: ServiceContext, R: role::Role> SharedExtractor for WithRole<C, R> {
    async fn from_request<X: ServerContext>(
        rqctx: &RequestContext<X>,
    ) -> Result<Self, dropshot::HttpError> {
        let caller = verified_caller::<C, X>(rqctx).await?;
        // Roles are a ladder of one step today: admin, or not.
        let has_role = R::NAME != role::Admin::NAME || caller.admin;
        if !has_role {
            return Err(fail(
                &rqctx.request_id,
                auth::forbidden(
                    &rqctx.request_id,
                    &format!("Only callers with the {} role may do this.", R::NAME),
                ),
            ));
        }
        Ok(WithRole(caller, PhantomData))
    }

    fn metadata(_: ApiEndpointBodyContentType) -> ExtractorMetadata {
        no_parameters()
    }
}

/// Another service delivering an event with the shared events token
/// (`security: [{eventsAuth: []}]`, `EVENTS_TOKEN`). Without a configured token every
/// delivery is refused.
pub struct EventSender<C>(PhantomData<fn() -> C>);

/// Whether `given` is `expected`, compared in constant time.
fn same_secret(expected: &str, given: &str) -> bool {
    use sha2::{Digest, Sha256};
    // Equal-length digests, so the comparison time says nothing about the token.
    let (a, b) = (Sha256::digest(expected), Sha256::digest(given));
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

#[async_trait]
impl<C: ServiceContext> SharedExtractor for EventSender<C> {
    async fn from_request<X: ServerContext>(
        rqctx: &RequestContext<X>,
    ) -> Result<Self, dropshot::HttpError> {
        let service = service_context::<C, X>(rqctx)?;
        let rid = rqctx.request_id.as_str();
        let given = bearer(rqctx).map_err(|p| fail(rid, p))?;
        match (service.events_token(), given) {
            (Some(expected), Some(given)) if same_secret(expected, given) => {
                Ok(EventSender(PhantomData))
            }
            (_, given) => Err(fail(
                rid,
                auth::unauthorized(
                    rid,
                    "send the services' events token as a Bearer token",
                    given.is_some(),
                ),
            )),
        }
    }

    fn metadata(_: ApiEndpointBodyContentType) -> ExtractorMetadata {
        no_parameters()
    }
}

/// HTTP Basic credentials where the operation also accepts none
/// (`security: [{basicAuth: []}, {}]`): `None` without `Authorization: Basic`; Basic
/// credentials that cannot be read are 401.
pub struct BasicCredentials(Option<(String, String)>);

impl BasicCredentials {
    /// (login, password), if sent.
    pub fn into_inner(self) -> Option<(String, String)> {
        self.0
    }
}

#[async_trait]
impl SharedExtractor for BasicCredentials {
    async fn from_request<X: ServerContext>(
        rqctx: &RequestContext<X>,
    ) -> Result<Self, dropshot::HttpError> {
        // Another scheme's credentials (a client that always sends its bearer token) are
        // not Basic credentials, and not this operation's business.
        let Some(b64) = rqctx
            .request
            .headers()
            .get(http::header::AUTHORIZATION)
            .and_then(|h| h.to_str().ok())
            .and_then(|h| {
                h.strip_prefix("Basic ")
                    .or_else(|| h.strip_prefix("basic "))
            })
        else {
            return Ok(BasicCredentials(None));
        };
        Some(b64)
            .and_then(|b64| {
                use base64::Engine;
                base64::engine::general_purpose::STANDARD
                    .decode(b64.trim())
                    .ok()
            })
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .and_then(|pair| {
                pair.split_once(':')
                    .map(|(u, p)| (u.to_string(), p.to_string()))
            })
            .map(|pair| BasicCredentials(Some(pair)))
            .ok_or_else(|| {
                fail(
                    &rqctx.request_id,
                    Problem::new(
                        401,
                        "The Authorization header is not HTTP Basic credentials.",
                    )
                    .header(http::header::WWW_AUTHENTICATE, "Basic realm=\"taproom\""),
                )
            })
    }

    fn metadata(_: ApiEndpointBodyContentType) -> ExtractorMetadata {
        no_parameters()
    }
}
