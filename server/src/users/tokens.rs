//! Access tokens: EdDSA (Ed25519) JWTs signed with a key the users service keeps in its
//! database, sealed under a key-encryption key (`kek`). Only this service holds private
//! keys; every service verifies with the public keys published at
//! `/.well-known/jwks.json`.
//!
//! Exactly one key signs (the row with `active = 1`); `server admin rotate-keys` makes a
//! new one, and the old one stays published until every token it signed has expired.
//! Every instance reads the signing key at each mint and the published keys from the
//! database, so a rotation reaches running instances at once.

use super::kek::Kek;
use super::{sessions, store};
use crate::runtime::auth::{Claims, KeySource, Keyring, RefetchPolicy, ISSUER};
use crate::runtime::db::{now_text, time_text, Db};
use anyhow::{Context, Result};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use taproom_client::users::types;
use uuid::Uuid;

/// How long past the token lifetime a retired key stays published: more than the
/// verifiers' 5 s leeway, for clocks that differ between hosts and a mint that read the
/// old key just before a rotation committed.
pub const RETIRED_KEY_GRACE: Duration = Duration::from_secs(60);

pub struct Tokens {
    db: Db,
    kek: Arc<Kek>,
    ttl_secs: u64,
    /// Lifetime of each refresh token (see `sessions`).
    pub refresh_ttl_secs: u64,
    /// The signing key last opened, by kid: opened again only when another key signs.
    signer: Mutex<Option<(String, EncodingKey)>>,
    pub keyring: Arc<Keyring>,
}

/// The published keys, as the service's own keyring reads them.
struct Published {
    db: Db,
    ttl_secs: u64,
}

#[async_trait::async_trait]
impl KeySource for Published {
    async fn fetch(&self) -> Result<Vec<(String, String)>> {
        published(&self.db, self.ttl_secs).await
    }
}

/// Keys retired before this signed only tokens that have expired.
fn retired_cutoff(ttl_secs: u64) -> String {
    let keep = Duration::from_secs(ttl_secs) + RETIRED_KEY_GRACE;
    let keep = chrono::Duration::from_std(keep).unwrap_or(chrono::Duration::MAX);
    time_text(
        chrono::Utc::now()
            .checked_sub_signed(keep)
            .unwrap_or(chrono::DateTime::<chrono::Utc>::MIN_UTC),
    )
}

async fn published(db: &Db, ttl_secs: u64) -> Result<Vec<(String, String)>> {
    store::published_keys(db, &retired_cutoff(ttl_secs))
        .await
        .map_err(|e| anyhow::anyhow!("{e:?}"))
}

/// A new Ed25519 key: (kid, sealed private key, public x).
fn new_key(kek: &Kek) -> Result<(String, String, String)> {
    use ed25519_dalek::pkcs8::EncodePrivateKey;
    let signing = ed25519_dalek::SigningKey::generate(&mut argon2::password_hash::rand_core::OsRng);
    let der = signing
        .to_pkcs8_der()
        .context("encoding the new signing key")?;
    let kid = Uuid::now_v7().to_string();
    let sealed = kek.seal(&kid, der.as_bytes())?;
    let public = URL_SAFE_NO_PAD.encode(signing.verifying_key().to_bytes());
    Ok((kid, sealed, public))
}

/// Seals keys left in plain text by older versions, dates retired keys whose retirement
/// was not recorded, and deletes keys whose tokens have all expired.
pub async fn tidy(db: &Db, kek: &Kek, ttl_secs: u64) -> Result<u64> {
    let db_err = |e| anyhow::anyhow!("{e:?}");
    for (kid, plain) in store::plain_signing_keys(db).await.map_err(db_err)? {
        let der = STANDARD
            .decode(plain)
            .with_context(|| format!("stored signing key {kid} is not base64"))?;
        store::seal_signing_key(db, &kid, &kek.seal(&kid, &der)?)
            .await
            .map_err(db_err)?;
    }
    store::tidy_signing_keys(db, &now_text(), &retired_cutoff(ttl_secs))
        .await
        .map_err(db_err)
}

/// What `rotate` did.
pub struct Rotation {
    pub new_kid: String,
    /// Keys that stopped signing (or were deleted, with `revoke`).
    pub old_kids: Vec<String>,
    /// Keys deleted because every token they signed has expired.
    pub expired: u64,
}

/// Makes a new key the signing key (`server admin rotate-keys`).
pub async fn rotate(db: &Db, kek: &Kek, ttl_secs: u64, revoke: bool) -> Result<Rotation> {
    let expired = tidy(db, kek, ttl_secs).await?;
    let (kid, sealed, public) = new_key(kek)?;
    let old_kids = store::rotate_signing_key(db, &kid, &sealed, &public, &now_text(), revoke)
        .await
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    Ok(Rotation {
        new_kid: kid,
        old_kids,
        expired,
    })
}

/// The signing key: (kid, PKCS#8 DER), opened.
pub async fn signing_key(db: &Db, kek: &Kek) -> Result<(String, Vec<u8>)> {
    let (kid, sealed) = store::active_signing_key(db)
        .await
        .map_err(|e| anyhow::anyhow!("{e:?}"))?
        .context("there is no signing key")?;
    let der = kek.open(&kid, &sealed)?;
    Ok((kid, der))
}

impl Tokens {
    /// Seals plain keys, creates the signing key if there is none, and checks that it
    /// opens with `kek` (a wrong KEK stops start-up rather than every login).
    pub async fn load(
        db: &Db,
        kek: Kek,
        ttl_secs: u64,
        refresh_ttl_secs: u64,
    ) -> Result<Tokens> {
        tidy(db, &kek, ttl_secs).await?;
        if store::active_signing_key(db)
            .await
            .map_err(|e| anyhow::anyhow!("{e:?}"))?
            .is_none()
        {
            // Instances starting together each offer a key; the first one stored signs
            // for all of them (they all read it back below).
            let (kid, sealed, public) = new_key(&kek)?;
            store::insert_first_signing_key(db, &kid, &sealed, &public)
                .await
                .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        }
        let (kid, der) = signing_key(db, &kek).await?;
        // The database is local and cheap to ask: fetch on every unknown kid, but forged
        // ones are remembered as unknown.
        let policy = RefetchPolicy {
            interval: Duration::ZERO,
            failure_backoff: Duration::from_secs(1),
            ..RefetchPolicy::REMOTE
        };
        let source = Published {
            db: db.clone(),
            ttl_secs,
        };
        Ok(Tokens {
            db: db.clone(),
            kek: Arc::new(kek),
            ttl_secs,
            refresh_ttl_secs,
            signer: Mutex::new(Some((kid, EncodingKey::from_ed_der(&der)))),
            keyring: Arc::new(Keyring::with_source(Box::new(source), policy)),
        })
    }

    /// The signing key now, opened once per key.
    async fn signer(&self) -> Result<(String, EncodingKey)> {
        let (kid, sealed) = store::active_signing_key(&self.db)
            .await
            .map_err(|e| anyhow::anyhow!("{e:?}"))?
            .context("there is no signing key")?;
        let mut cached = self.signer.lock().expect("signer lock");
        match &*cached {
            Some((k, key)) if *k == kid => Ok((kid, key.clone())),
            _ => {
                let der = self.kek.open(&kid, &sealed)?;
                let key = EncodingKey::from_ed_der(&der);
                *cached = Some((kid.clone(), key.clone()));
                Ok((kid, key))
            }
        }
    }

    /// An access token for `user_id` as `role`, paired with the session's new `refresh`
    /// token.
    pub async fn mint(
        &self,
        user_id: Uuid,
        role: types::Role,
        refresh: sessions::Issued,
    ) -> Result<types::Token> {
        let (kid, key) = self.signer().await?;
        let now = chrono::Utc::now().timestamp().max(0) as u64;
        let claims = Claims {
            sub: user_id.to_string(),
            role: role.to_string(),
            iat: now,
            exp: now + self.ttl_secs,
            iss: ISSUER.into(),
        };
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(kid);
        crate::runtime::jwt_crypto::install();
        let access_token =
            jsonwebtoken::encode(&header, &claims, &key).context("signing a token")?;
        Ok(types::Token {
            access_token,
            token_type: types::TokenTokenType::Bearer,
            expires_in: u32::try_from(self.ttl_secs).unwrap_or(u32::MAX),
            refresh_token: refresh.token,
            refresh_expires_in: refresh.expires_in,
        })
    }

    /// The published keys, read from the database each time so that every instance
    /// publishes a rotation at once.
    pub async fn jwks(&self) -> Result<types::Jwks> {
        let keys = published(&self.db, self.ttl_secs)
            .await?
            .into_iter()
            .map(|(kid, x)| types::Jwk {
                kty: "OKP".into(),
                crv: Some("Ed25519".into()),
                x: Some(x),
                kid,
                alg: Some("EdDSA".into()),
                use_: Some("sig".into()),
            })
            .collect();
        Ok(types::Jwks { keys })
    }
}
