//! Access tokens: EdDSA (Ed25519) JWTs signed with a key the users service creates on
//! first start and keeps in its database. Only this service holds private keys; every
//! service verifies with the public keys published at `/.well-known/jwks.json`.

use super::{sessions, store};
use crate::runtime::auth::{Claims, Keyring, ISSUER};
use crate::runtime::Db;
use anyhow::{Context, Result};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use taproom_client::users::types;
use uuid::Uuid;

pub struct Tokens {
    kid: String,
    key: EncodingKey,
    ttl_secs: u64,
    /// Lifetime of each refresh token (see `sessions`).
    pub refresh_ttl_secs: u64,
    pub keyring: std::sync::Arc<Keyring>,
    jwks: types::Jwks,
}

impl Tokens {
    /// Loads the signing keys, creating the first one if there is none.
    pub async fn load(db: &Db, ttl_secs: u64, refresh_ttl_secs: u64) -> Result<Tokens> {
        let mut keys = store::signing_keys(db)
            .await
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        if keys.is_empty() {
            use ed25519_dalek::pkcs8::EncodePrivateKey;
            let signing =
                ed25519_dalek::SigningKey::generate(&mut argon2::password_hash::rand_core::OsRng);
            let private = STANDARD.encode(
                signing
                    .to_pkcs8_der()
                    .context("encoding the new signing key")?
                    .as_bytes(),
            );
            let public = URL_SAFE_NO_PAD.encode(signing.verifying_key().to_bytes());
            let kid = Uuid::now_v7().to_string();
            // Two instances starting at once may both create one; both keys are valid.
            store::insert_signing_key(db, &kid, &private, &public)
                .await
                .map_err(|e| anyhow::anyhow!("{e:?}"))?;
            keys = store::signing_keys(db)
                .await
                .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        }
        let keyring = std::sync::Arc::new(Keyring::default());
        let mut jwks = Vec::new();
        for (kid, _, public) in &keys {
            keyring.insert(kid, public)?;
            jwks.push(types::Jwk {
                kty: "OKP".into(),
                crv: Some("Ed25519".into()),
                x: Some(public.clone()),
                kid: kid.clone(),
                alg: Some("EdDSA".into()),
                use_: Some("sig".into()),
            });
        }
        let (kid, private, _) = keys.into_iter().next().expect("at least one key");
        let der = STANDARD
            .decode(private)
            .context("stored signing key is not base64")?;
        Ok(Tokens {
            kid,
            key: EncodingKey::from_ed_der(&der),
            ttl_secs,
            refresh_ttl_secs,
            keyring,
            jwks: types::Jwks { keys: jwks },
        })
    }

    /// An access token for `user_id` as `role`, paired with the session's new `refresh`
    /// token.
    pub fn mint(
        &self,
        user_id: Uuid,
        role: types::Role,
        refresh: sessions::Issued,
    ) -> Result<types::Token> {
        let now = chrono::Utc::now().timestamp().max(0) as u64;
        let claims = Claims {
            sub: user_id.to_string(),
            role: role.to_string(),
            iat: now,
            exp: now + self.ttl_secs,
            iss: ISSUER.into(),
        };
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        let access_token =
            jsonwebtoken::encode(&header, &claims, &self.key).context("signing a token")?;
        Ok(types::Token {
            access_token,
            token_type: types::TokenTokenType::Bearer,
            expires_in: u32::try_from(self.ttl_secs).unwrap_or(u32::MAX),
            refresh_token: refresh.token,
            refresh_expires_in: refresh.expires_in,
        })
    }

    pub fn jwks(&self) -> types::Jwks {
        self.jwks.clone()
    }
}
