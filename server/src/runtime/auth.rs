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
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use uuid::Uuid;

/// `iss` of every token.
pub const ISSUER: &str = "taproom-users";

/// Seconds of clock skew forgiven on `exp`.
const LEEWAY_SECS: u64 = 5;

/// Bound on the verified tokens remembered by one keyring.
pub const VERIFIED_MAX: usize = 10_000;

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
    verified: Mutex<Verified>,
}

/// Tokens whose signature already checked out, by SHA-256 of the token, until they
/// expire: a signature check costs more than the rest of a cheap request, and a client
/// sends the same token many times. Only tokens that passed the full check get in, so
/// forged ones cannot fill it; it is emptied whenever the key set changes, so a token
/// signed by a key no longer published is checked (and refused) again.
#[derive(Default)]
struct Verified {
    claims: HashMap<[u8; 32], Claims>,
    /// Bumped when the key set changes: a check that started with the old keys does
    /// not put its result in.
    generation: u64,
}

impl Verified {
    fn insert(&mut self, digest: [u8; 32], claims: Claims, generation: u64, now: u64) {
        if generation != self.generation {
            return;
        }
        if self.claims.len() >= VERIFIED_MAX {
            self.claims.retain(|_, c| !expired(c, now));
            if self.claims.len() >= VERIFIED_MAX {
                self.claims.clear();
            }
        }
        self.claims.insert(digest, claims);
    }
}

fn expired(claims: &Claims, now: u64) -> bool {
    claims.exp.saturating_add(LEEWAY_SECS) < now
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// How every token is validated besides its signature.
fn validation() -> &'static Validation {
    static VALIDATION: std::sync::OnceLock<Validation> = std::sync::OnceLock::new();
    VALIDATION.get_or_init(|| {
        super::jwt_crypto::install();
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&[ISSUER]);
        validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        validation.leeway = LEEWAY_SECS;
        validation
    })
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
    /// The key `kid` with the generation of the key set it is from (read under the
    /// keys' lock, which a change of the set holds while it bumps the generation).
    fn get(&self, kid: &str) -> Option<(DecodingKey, u64)> {
        let keys = self.keys.read().expect("keyring lock");
        let key = keys.get(kid).cloned()?;
        let generation = self
            .verified
            .lock()
            .expect("verified tokens lock")
            .generation;
        Some((key, generation))
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
            verified: Default::default(),
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
    async fn key(&self, kid: &str) -> Result<(DecodingKey, u64), Rejection> {
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
        {
            let mut current = self.keys.write().expect("keyring lock");
            *current = keys;
            let mut verified = self.verified.lock().expect("verified tokens lock");
            verified.claims.clear();
            verified.generation += 1;
        }
        match self.get(kid) {
            Some(key) => Ok(key),
            None => {
                state.remember_unknown(kid, policy.unknown_kid_ttl);
                Err(UNKNOWN_KEY)
            }
        }
    }

    /// Checks a token: signature by a known key, EdDSA only, our issuer, not expired.
    /// A token that passed before is only checked for expiry again.
    pub async fn verify(&self, token: &str) -> Result<Claims, Rejection> {
        use sha2::{Digest, Sha256};
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some(claims) = self
            .verified
            .lock()
            .expect("verified tokens lock")
            .claims
            .get(&digest)
        {
            return if expired(claims, unix_now()) {
                Err(Rejection::Invalid("the token has expired"))
            } else {
                Ok(claims.clone())
            };
        }
        let (claims, generation) = self.verify_signed(token).await?;
        self.verified.lock().expect("verified tokens lock").insert(
            digest,
            claims.clone(),
            generation,
            unix_now(),
        );
        Ok(claims)
    }

    /// The full check of a token, and the generation of the key set that checked it.
    async fn verify_signed(&self, token: &str) -> Result<(Claims, u64), Rejection> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| Rejection::Invalid("the token is malformed"))?;
        if header.alg != Algorithm::EdDSA {
            return Err(Rejection::Invalid("the token is not signed with EdDSA"));
        }
        let kid = header
            .kid
            .ok_or(Rejection::Invalid("the token names no key"))?;
        let (key, generation) = self.key(&kid).await?;
        jsonwebtoken::decode::<Claims>(token, &key, validation())
            .map(|data| (data.claims, generation))
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

    /// How many verified tokens are remembered (for tests).
    pub fn verified_len(&self) -> usize {
        self.verified
            .lock()
            .expect("verified tokens lock")
            .claims
            .len()
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

    /// One fixed Ed25519 key, published as `kid`.
    struct OneKey(ed25519_dalek::SigningKey);

    #[async_trait::async_trait]
    impl KeySource for OneKey {
        async fn fetch(&self) -> anyhow::Result<Vec<(String, String)>> {
            use base64::Engine;
            let x = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(self.0.verifying_key().to_bytes());
            Ok(vec![("kid".into(), x)])
        }
    }

    fn token(key: &ed25519_dalek::SigningKey, exp: u64) -> String {
        use ed25519_dalek::pkcs8::EncodePrivateKey;
        crate::runtime::jwt_crypto::install();
        let der = key.to_pkcs8_der().unwrap();
        let mut header = jsonwebtoken::Header::new(Algorithm::EdDSA);
        header.kid = Some("kid".into());
        let claims = Claims {
            sub: Uuid::nil().to_string(),
            role: "user".into(),
            iat: unix_now(),
            exp,
            iss: ISSUER.into(),
        };
        jsonwebtoken::encode(
            &header,
            &claims,
            &jsonwebtoken::EncodingKey::from_ed_der(der.as_bytes()),
        )
        .unwrap()
    }

    fn keyring() -> (Keyring, ed25519_dalek::SigningKey) {
        let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
        let policy = RefetchPolicy {
            interval: Duration::ZERO,
            ..RefetchPolicy::REMOTE
        };
        (
            Keyring::with_source(Box::new(OneKey(key.clone())), policy),
            key,
        )
    }

    #[tokio::test]
    async fn verified_tokens_are_remembered_and_still_expire() {
        let (keyring, key) = keyring();
        let good = token(&key, unix_now() + 600);
        assert_eq!(
            keyring.verify(&good).await.unwrap().sub,
            Uuid::nil().to_string()
        );
        assert_eq!(keyring.verified_len(), 1);
        assert!(keyring.verify(&good).await.is_ok());
        assert_eq!(keyring.fetches(), 1);

        // Refused tokens are never remembered: a changed signature, another key.
        let mut forged = good.clone();
        forged.replace_range(forged.len() - 4.., "AAAA");
        assert!(keyring.verify(&forged).await.is_err());
        let other = token(
            &ed25519_dalek::SigningKey::from_bytes(&[8; 32]),
            unix_now() + 600,
        );
        assert_eq!(
            keyring.verify(&other).await.map(|_| ()),
            Err(Rejection::Invalid("the token's signature is not valid"))
        );
        assert_eq!(keyring.verified_len(), 1);

        // A remembered token whose time has run out is refused like any expired one.
        {
            let mut verified = keyring.verified.lock().unwrap();
            let entry = verified.claims.values_mut().next().unwrap();
            entry.exp = unix_now() - LEEWAY_SECS - 1;
        }
        assert_eq!(
            keyring.verify(&good).await.map(|_| ()),
            Err(Rejection::Invalid("the token has expired"))
        );
    }

    #[tokio::test]
    async fn a_new_key_set_forgets_what_the_old_one_verified() {
        let (keyring, key) = keyring();
        assert!(keyring.verify(&token(&key, unix_now() + 600)).await.is_ok());
        assert_eq!(keyring.verified_len(), 1);
        // A token naming an unknown key makes the keyring fetch the set again.
        let mut header = jsonwebtoken::Header::new(Algorithm::EdDSA);
        header.kid = Some("another".into());
        let unknown = jsonwebtoken::encode(
            &header,
            &serde_json::json!({"sub": "x"}),
            &jsonwebtoken::EncodingKey::from_ed_der(
                ed25519_dalek::pkcs8::EncodePrivateKey::to_pkcs8_der(&key)
                    .unwrap()
                    .as_bytes(),
            ),
        )
        .unwrap();
        assert!(keyring.verify(&unknown).await.is_err());
        assert_eq!(keyring.fetches(), 2);
        assert_eq!(keyring.verified_len(), 0);
        // A check that began before the change does not put its result in.
        let mut verified = keyring.verified.lock().unwrap();
        let stale = verified.generation - 1;
        let claims = Claims {
            sub: "s".into(),
            role: "user".into(),
            iat: 0,
            exp: u64::MAX / 2,
            iss: ISSUER.into(),
        };
        verified.insert([1; 32], claims, stale, unix_now());
        assert!(verified.claims.is_empty());
    }

    #[test]
    fn remembered_tokens_are_bounded() {
        let mut verified = Verified::default();
        let now = unix_now();
        let claims = |exp| Claims {
            sub: "s".into(),
            role: "user".into(),
            iat: 0,
            exp,
            iss: ISSUER.into(),
        };
        for i in 0..VERIFIED_MAX as u32 {
            let mut digest = [0; 32];
            digest[..4].copy_from_slice(&i.to_be_bytes());
            // Half of them expired.
            let exp = if i % 2 == 0 { now - 60 } else { now + 60 };
            verified.insert(digest, claims(exp), 0, now);
        }
        assert_eq!(verified.claims.len(), VERIFIED_MAX);
        verified.insert([0xff; 32], claims(now + 60), 0, now);
        assert_eq!(
            verified.claims.len(),
            VERIFIED_MAX / 2 + 1,
            "the expired made room"
        );
        for i in 0..VERIFIED_MAX as u32 {
            let mut digest = [0xee; 32];
            digest[..4].copy_from_slice(&i.to_be_bytes());
            verified.insert(digest, claims(now + 60), 0, now);
        }
        assert!(verified.claims.len() <= VERIFIED_MAX);
    }
}
