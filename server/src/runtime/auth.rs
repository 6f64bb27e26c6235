//! Bearer-token authentication, shared by every service. Tokens are EdDSA-signed JWTs
//! minted only by the users service; every service verifies them locally against the
//! public keys it knows (a `Keyring`), and nothing else is accepted: no `alg: none`, no
//! symmetric algorithms, no unknown key ids, no expired tokens.

use super::Problem;
use dropshot::{RequestContext, ServerContext};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::RwLock;
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

/// Public keys by key id: the users service's own, or those other services fetch from
/// its JWKS (through the generated client) and refresh when a token names a key they do
/// not know yet.
#[derive(Default)]
pub struct Keyring {
    keys: RwLock<HashMap<String, DecodingKey>>,
    remote: Option<Remote>,
}

struct Remote {
    users: taproom_client::users::Client,
    /// When the key set was last fetched: unknown key ids trigger at most one fetch per
    /// `REFETCH_INTERVAL`, so forged kids cannot turn into a flood of requests to users.
    last_fetch: tokio::sync::Mutex<Option<std::time::Instant>>,
}

const REFETCH_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

/// Why a token was not accepted.
#[derive(Debug, PartialEq, Eq)]
pub enum Rejection {
    /// The token is not good: 401.
    Invalid(&'static str),
    /// The keys could not be fetched from the users service: 503.
    KeysUnavailable,
}

impl Keyring {
    /// Adds an Ed25519 public key given as the JWK `x` (base64url of the 32 raw bytes).
    pub fn insert(&self, kid: &str, x: &str) -> anyhow::Result<()> {
        let key = DecodingKey::from_ed_components(x)?;
        self.keys
            .write()
            .expect("keyring lock")
            .insert(kid.to_string(), key);
        Ok(())
    }

    fn get(&self, kid: &str) -> Option<DecodingKey> {
        self.keys.read().expect("keyring lock").get(kid).cloned()
    }

    /// A keyring filled from the users service's `get_jwks` at `users_url`, on demand.
    pub fn remote(users_url: &str, timeout: std::time::Duration) -> anyhow::Result<Keyring> {
        let http = super::calls::client(timeout, Default::default())?;
        Ok(Keyring {
            keys: RwLock::default(),
            remote: Some(Remote {
                users: taproom_client::users::Client::new_with_client(
                    users_url,
                    http,
                    Default::default(),
                ),
                last_fetch: tokio::sync::Mutex::new(None),
            }),
        })
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

    /// The key `kid`, fetching the key set again if it is unknown and may be new.
    async fn key(&self, kid: &str) -> Result<DecodingKey, Rejection> {
        if let Some(key) = self.get(kid) {
            return Ok(key);
        }
        let Some(remote) = &self.remote else {
            return Err(Rejection::Invalid("the token is signed by an unknown key"));
        };
        let mut last = remote.last_fetch.lock().await;
        // Another request may have fetched while this one waited.
        if let Some(key) = self.get(kid) {
            return Ok(key);
        }
        if last.is_some_and(|at| at.elapsed() < REFETCH_INTERVAL) {
            return Err(Rejection::Invalid("the token is signed by an unknown key"));
        }
        let jwks = remote
            .users
            .get_jwks()
            .send()
            .await
            .map_err(|_| Rejection::KeysUnavailable)?;
        *last = Some(std::time::Instant::now());
        for jwk in &jwks.into_inner().keys {
            if let (Some(x), Some("Ed25519")) = (&jwk.x, jwk.crv.as_deref()) {
                // A key we cannot read is skipped; tokens naming it are refused.
                let _ = self.insert(&jwk.kid, x);
            }
        }
        self.get(kid)
            .ok_or(Rejection::Invalid("the token is signed by an unknown key"))
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
