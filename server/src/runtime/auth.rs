//! Bearer-token authentication, shared by every service. Tokens are EdDSA-signed JWTs
//! minted only by the users service; every service verifies them locally against the
//! public keys it knows (a `Keyring`), and nothing else is accepted: no `alg: none`, no
//! symmetric algorithms, no unknown key ids, no expired tokens.

use super::Problem;
use dropshot::{RequestContext, ServerContext};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::RwLock;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// `iss` of every token.
pub const ISSUER: &str = "taproom-users";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// The user's id.
    pub sub: String,
    /// `user` or `admin`.
    pub role: String,
    pub iat: u64,
    pub exp: u64,
    pub iss: String,
}

/// Who is calling, once their token checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub user_id: Uuid,
    pub admin: bool,
}

impl Caller {
    /// The user themself or an admin.
    pub fn may_act_for(&self, user_id: Uuid) -> bool {
        self.admin || self.user_id == user_id
    }
}

/// Public keys by key id: those the users service publishes, fetched from its JWKS
/// (through the generated client) or, in the users service itself, read from its
/// database. Fetched again when a token names a key not known yet; each fetch replaces the
/// whole set, so keys no longer published stop verifying.
#[derive(Default)]
pub struct Keyring {
    keys: RwLock<HashMap<String, DecodingKey>>,
    fetcher: Option<Fetcher>,
    /// Where fetches are counted (`keyring_refreshes_total`), once a service says.
    refreshes: std::sync::OnceLock<super::metrics::Refreshes>,
}

/// Where a keyring gets the published keys from.
#[async_trait::async_trait]
pub trait KeySource: Send + Sync {
    /// Every published key: (kid, JWK `x`, base64url of the 32 raw Ed25519 bytes).
    async fn fetch(&self) -> anyhow::Result<Vec<(String, String)>>;
}

/// The users service's JWKS, through the generated client.
struct RemoteJwks(taproom_client::users::Client);

#[async_trait::async_trait]
impl KeySource for RemoteJwks {
    async fn fetch(&self) -> anyhow::Result<Vec<(String, String)>> {
        let jwks = self.0.get_jwks().send().await?.into_inner();
        Ok(jwks
            .keys
            .into_iter()
            .filter(|jwk| jwk.crv.as_deref() == Some("Ed25519"))
            .filter_map(|jwk| Some((jwk.kid, jwk.x?)))
            .collect())
    }
}

/// How often a keyring may fetch. Unknown key ids cost nothing to forge, and while users
/// is down every fetch waits for its timeout under the keyring's lock, so fetches are
/// bounded three ways.
#[derive(Debug, Clone, Copy)]
pub struct RefetchPolicy {
    /// At most one fetch per `interval` after a successful one.
    pub interval: Duration,
    /// After a failed fetch, none for this long: unknown keys are 503 meanwhile.
    pub failure_backoff: Duration,
    /// A key id a fetch did not find is not fetched for again for this long (at most
    /// `UNKNOWN_KIDS_MAX` remembered).
    pub unknown_kid_ttl: Duration,
}

impl RefetchPolicy {
    /// For services that fetch from users over the network.
    pub const REMOTE: RefetchPolicy = RefetchPolicy {
        interval: Duration::from_secs(5),
        failure_backoff: Duration::from_secs(5),
        unknown_kid_ttl: Duration::from_secs(60),
    };
}

/// Bound on the remembered unknown key ids: forged ones past it are not remembered, and
/// `interval` alone bounds their fetches.
pub const UNKNOWN_KIDS_MAX: usize = 1024;

struct Fetcher {
    source: Box<dyn KeySource>,
    policy: RefetchPolicy,
    state: tokio::sync::Mutex<FetchState>,
    /// Fetches attempted, failed ones included (for tests and operators).
    fetches: AtomicU64,
}

#[derive(Default)]
struct FetchState {
    last_success: Option<Instant>,
    last_failure: Option<Instant>,
    unknown: HashMap<String, Instant>,
}

impl FetchState {
    fn remember_unknown(&mut self, kid: &str, ttl: Duration) {
        if self.unknown.len() >= UNKNOWN_KIDS_MAX {
            self.unknown.retain(|_, at| at.elapsed() < ttl);
        }
        if self.unknown.len() < UNKNOWN_KIDS_MAX {
            self.unknown.insert(kid.to_string(), Instant::now());
        }
    }
}

/// Why a token was not accepted.
#[derive(Debug, PartialEq, Eq)]
pub enum Rejection {
    /// The token is not good: 401.
    Invalid(&'static str),
    /// The keys could not be fetched from the users service: 503.
    KeysUnavailable,
}

const UNKNOWN_KEY: Rejection = Rejection::Invalid("the token is signed by an unknown key");

impl Keyring {
    fn get(&self, kid: &str) -> Option<DecodingKey> {
        self.keys.read().expect("keyring lock").get(kid).cloned()
    }

    /// A keyring filled from `source` on demand, as `policy` allows.
    pub fn with_source(source: Box<dyn KeySource>, policy: RefetchPolicy) -> Keyring {
        Keyring {
            keys: RwLock::default(),
            fetcher: Some(Fetcher {
                source,
                policy,
                state: Default::default(),
                fetches: AtomicU64::new(0),
            }),
            refreshes: Default::default(),
        }
    }

    /// Counts this keyring's fetches in `refreshes` (the first service to ask wins).
    pub fn count_refreshes(&self, refreshes: &super::metrics::Refreshes) {
        let _ = self.refreshes.set(refreshes.clone());
    }

    fn counted(&self, result: &'static str) {
        if let Some(refreshes) = self.refreshes.get() {
            refreshes
                .get_or_create(&super::metrics::ResultLabels { result })
                .inc();
        }
    }

    /// A keyring filled from the users service's `get_jwks` at `users_url`, on demand.
    pub fn remote(users_url: &str, timeout: Duration) -> anyhow::Result<Keyring> {
        Self::remote_with(users_url, timeout, RefetchPolicy::REMOTE)
    }

    /// `remote` with another refetch policy.
    pub fn remote_with(
        users_url: &str,
        timeout: Duration,
        policy: RefetchPolicy,
    ) -> anyhow::Result<Keyring> {
        let http = super::calls::client(timeout, Default::default())?;
        let users =
            taproom_client::users::Client::new_with_client(users_url, http, Default::default());
        Ok(Self::with_source(Box::new(RemoteJwks(users)), policy))
    }

    /// The keyring of a service that verifies tokens with the users service among its
    /// `peers`.
    pub fn for_peers(
        config: &super::config::Config,
        peers: &super::registry::PeerUrls,
    ) -> anyhow::Result<std::sync::Arc<Keyring>> {
        let users = peers.get("users").ok_or_else(|| {
            anyhow::anyhow!("tokens are verified with the users service: list it among the peers")
        })?;
        Ok(std::sync::Arc::new(Keyring::remote(
            users,
            config.service_timeout(),
        )?))
    }

    /// How many fetches this keyring has attempted.
    pub fn fetches(&self) -> u64 {
        self.fetcher
            .as_ref()
            .map_or(0, |f| f.fetches.load(Ordering::Relaxed))
    }

    /// The key `kid`, fetching the key set again if it is unknown and may be new.
    async fn key(&self, kid: &str) -> Result<DecodingKey, Rejection> {
        if let Some(key) = self.get(kid) {
            return Ok(key);
        }
        let Some(fetcher) = &self.fetcher else {
            return Err(UNKNOWN_KEY);
        };
        let policy = fetcher.policy;
        let mut state = fetcher.state.lock().await;
        // Another request may have fetched while this one waited.
        if let Some(key) = self.get(kid) {
            return Ok(key);
        }
        if state
            .last_failure
            .is_some_and(|at| at.elapsed() < policy.failure_backoff)
        {
            return Err(Rejection::KeysUnavailable);
        }
        if state
            .unknown
            .get(kid)
            .is_some_and(|at| at.elapsed() < policy.unknown_kid_ttl)
            || state
                .last_success
                .is_some_and(|at| at.elapsed() < policy.interval)
        {
            return Err(UNKNOWN_KEY);
        }
        fetcher.fetches.fetch_add(1, Ordering::Relaxed);
        let Ok(published) = fetcher.source.fetch().await else {
            self.counted("error");
            state.last_failure = Some(Instant::now());
            return Err(Rejection::KeysUnavailable);
        };
        self.counted("ok");
        state.last_failure = None;
        state.last_success = Some(Instant::now());
        // A key we cannot read is skipped; tokens naming it are refused.
        let keys: HashMap<String, DecodingKey> = published
            .into_iter()
            .filter_map(|(kid, x)| Some((kid, DecodingKey::from_ed_components(&x).ok()?)))
            .collect();
        *self.keys.write().expect("keyring lock") = keys;
        match self.get(kid) {
            Some(key) => Ok(key),
            None => {
                state.remember_unknown(kid, policy.unknown_kid_ttl);
                Err(UNKNOWN_KEY)
            }
        }
    }

    /// Checks a token: signature by a known key, EdDSA only, our issuer, not expired.
    pub async fn verify(&self, token: &str) -> Result<Claims, Rejection> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| Rejection::Invalid("the token is malformed"))?;
        if header.alg != Algorithm::EdDSA {
            return Err(Rejection::Invalid("the token is not signed with EdDSA"));
        }
        let kid = header
            .kid
            .ok_or(Rejection::Invalid("the token names no key"))?;
        let key = self.key(&kid).await?;
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&[ISSUER]);
        validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        validation.leeway = 5;
        jsonwebtoken::decode::<Claims>(token, &key, &validation)
            .map(|data| data.claims)
            .map_err(|e| {
                Rejection::Invalid(match e.kind() {
                    jsonwebtoken::errors::ErrorKind::ExpiredSignature => "the token has expired",
                    jsonwebtoken::errors::ErrorKind::InvalidSignature => {
                        "the token's signature is not valid"
                    }
                    _ => "the token is not valid",
                })
            })
    }
}

/// A 401 problem with the `WWW-Authenticate` challenge RFC 6750 asks for.
pub fn unauthorized(request_id: &str, detail: &str, token_given: bool) -> Problem {
    let challenge = if token_given {
        format!("Bearer realm=\"taproom\", error=\"invalid_token\", error_description=\"{detail}\"")
    } else {
        "Bearer realm=\"taproom\"".to_string()
    };
    Problem::new(401, format!("Authentication required: {detail}."))
        .request(request_id)
        .header(http::header::WWW_AUTHENTICATE, &challenge)
}

/// The bearer token of a request as sent, to pass along when calling another service
/// on the caller's behalf.
pub fn bearer_token<C: ServerContext>(rqctx: &RequestContext<C>) -> Option<String> {
    let header = rqctx.request.headers().get(http::header::AUTHORIZATION)?;
    bearer_credentials(header.to_str().ok()?).map(str::to_string)
}

/// The token of an `Authorization` header value of the Bearer scheme, if it is one.
pub fn bearer_credentials(value: &str) -> Option<&str> {
    value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// 403 for a caller who is known but not allowed.
pub fn forbidden(request_id: &str, detail: &str) -> Problem {
    Problem::new(403, detail).request(request_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembered_unknown_kids_are_bounded() {
        let mut state = FetchState::default();
        let ttl = Duration::from_secs(3600);
        for i in 0..UNKNOWN_KIDS_MAX + 100 {
            state.remember_unknown(&format!("forged-{i}"), ttl);
        }
        assert_eq!(state.unknown.len(), UNKNOWN_KIDS_MAX);
        // Expired entries make room again.
        state.remember_unknown("late", Duration::ZERO);
        assert_eq!(state.unknown.len(), 1);
    }
}
