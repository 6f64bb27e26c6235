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

/// Public keys by key id.
#[derive(Default)]
pub struct Keyring {
    keys: RwLock<HashMap<String, DecodingKey>>,
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

    /// Checks a token: signature by a known key, EdDSA only, our issuer, not expired.
    pub fn verify(&self, token: &str) -> Result<Claims, &'static str> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| "the token is malformed")?;
        if header.alg != Algorithm::EdDSA {
            return Err("the token is not signed with EdDSA");
        }
        let kid = header.kid.ok_or("the token names no key")?;
        let key = self
            .get(&kid)
            .ok_or("the token is signed by an unknown key")?;
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&[ISSUER]);
        validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        validation.leeway = 5;
        jsonwebtoken::decode::<Claims>(token, &key, &validation)
            .map(|data| data.claims)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => "the token has expired",
                jsonwebtoken::errors::ErrorKind::InvalidSignature => {
                    "the token's signature is not valid"
                }
                _ => "the token is not valid",
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

/// The caller of a request, from its `Authorization: Bearer` header.
pub fn caller<C: ServerContext>(
    rqctx: &RequestContext<C>,
    keyring: &Keyring,
) -> Result<Caller, Problem> {
    let rid = &rqctx.request_id;
    let header = rqctx
        .request
        .headers()
        .get(http::header::AUTHORIZATION)
        .ok_or_else(|| {
            unauthorized(rid, "send an `Authorization: Bearer <token>` header", false)
        })?;
    let token = header
        .to_str()
        .ok()
        .and_then(|h| {
            h.strip_prefix("Bearer ")
                .or_else(|| h.strip_prefix("bearer "))
        })
        .map(str::trim)
        .ok_or_else(|| unauthorized(rid, "the Authorization header is not a Bearer token", true))?;
    let claims = keyring
        .verify(token)
        .map_err(|why| unauthorized(rid, why, true))?;
    let user_id = Uuid::parse_str(&claims.sub)
        .map_err(|_| unauthorized(rid, "the token is not valid", true))?;
    Ok(Caller {
        user_id,
        admin: claims.role == "admin",
    })
}

/// 403 for a caller who is known but not allowed.
pub fn forbidden(request_id: &str, detail: &str) -> Problem {
    Problem::new(403, detail).request(request_id)
}
