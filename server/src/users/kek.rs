//! The key-encryption key (KEK) that seals the token-signing keys in the users database:
//! a copy of the database (a backup, a dump, a read through another role) then yields no
//! key that can mint tokens. AES-256-GCM with a random nonce per seal, the key id as
//! associated data, so a sealed key moved to another row does not open. Sealed values are
//! `v1:` + base64(nonce (12 bytes) ‖ ciphertext ‖ tag (16 bytes)), the standard AES-GCM
//! layout: any AES-GCM implementation opens them (aws-lc-rs sealed them before ring did).

use crate::runtime::config::Config;
use anyhow::{Context, Result};
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use std::path::{Path, PathBuf};

/// Prefix of a sealed key: the format, so that another can follow.
const SEALED_V1: &str = "v1:";

/// The KEK made for SQLite set-ups that name none, in DATA_DIR.
pub const GENERATED_FILE: &str = "signing-key.kek";

const HOW: &str = "32 random bytes in base64, e.g. from `openssl rand -base64 32`";

pub struct Kek(LessSafeKey);

impl Kek {
    /// The KEK from text: 32 bytes in base64 (surrounding whitespace ignored).
    pub fn parse(text: &str) -> Result<Kek> {
        let bytes = STANDARD
            .decode(text.trim())
            .ok()
            .filter(|b| b.len() == 32)
            .with_context(|| format!("the key-encryption key must be {HOW}"))?;
        let key = UnboundKey::new(&AES_256_GCM, &bytes)
            .map_err(|_| anyhow::anyhow!("the key-encryption key is not usable"))?;
        Ok(Kek(LessSafeKey::new(key)))
    }

    /// The KEK the settings name: SIGNING_KEY_ENCRYPTION_KEY or SIGNING_KEY_FILE. With
    /// neither, a database on PostgreSQL (a deployment) refuses to start, since a KEK kept
    /// beside it would protect nothing; SQLite (one host, `server all`) gets one made in
    /// DATA_DIR, readable by its owner only, which still keeps the key out of database
    /// files and their backups.
    /// Decided before connecting, so that a deployment missing it changes nothing.
    pub fn from_config(config: &Config) -> Result<Kek> {
        let url = config.database_url(super::NAME)?;
        let postgres = url.starts_with("postgres://") || url.starts_with("postgresql://");
        match (
            &config.signing_key_encryption_key,
            &config.signing_key_file,
        ) {
            (Some(_), Some(_)) => anyhow::bail!(
                "SIGNING_KEY_ENCRYPTION_KEY and SIGNING_KEY_FILE are both set: set one"
            ),
            (Some(text), None) => Kek::parse(text).context("SIGNING_KEY_ENCRYPTION_KEY"),
            (None, Some(path)) => read(path)
                .and_then(|text| Kek::parse(&text))
                .with_context(|| format!("SIGNING_KEY_FILE ({})", path.display())),
            (None, None) if postgres => anyhow::bail!(
                "SIGNING_KEY_FILE or SIGNING_KEY_ENCRYPTION_KEY: the users service on PostgreSQL \
                 keeps its signing keys encrypted and needs a key-encryption key ({HOW})"
            ),
            (None, None) => {
                let path = config.data_dir.join(GENERATED_FILE);
                generated(&path)
                    .and_then(|text| Kek::parse(&text))
                    .with_context(|| format!("the generated key-encryption key {}", path.display()))
            }
        }
    }

    /// Seals a private key stored under `kid`, with a fresh random nonce (a key is sealed
    /// a handful of times per KEK, far from the 2^32 seals random 96-bit nonces allow).
    pub fn seal(&self, kid: &str, plain: &[u8]) -> Result<String> {
        let mut nonce = [0u8; NONCE_LEN];
        fill_random(&mut nonce)?;
        let mut data = plain.to_vec();
        self.0
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(kid.as_bytes()),
                &mut data,
            )
            .map_err(|_| anyhow::anyhow!("sealing the signing key {kid}"))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&data);
        Ok(format!("{SEALED_V1}{}", STANDARD.encode(out)))
    }

    /// Opens what `seal` made for the same `kid`.
    pub fn open(&self, kid: &str, sealed: &str) -> Result<Vec<u8>> {
        let fail = || {
            anyhow::anyhow!(
                "the signing key {kid} does not open with this key-encryption key (another \
                 SIGNING_KEY_ENCRYPTION_KEY/SIGNING_KEY_FILE sealed it, or the row was altered)"
            )
        };
        let data = sealed
            .strip_prefix(SEALED_V1)
            .and_then(|b64| STANDARD.decode(b64).ok())
            .filter(|d| d.len() > NONCE_LEN)
            .ok_or_else(fail)?;
        let (nonce, ciphertext) = data.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| fail())?;
        let mut ciphertext = ciphertext.to_vec();
        let plain = self
            .0
            .open_in_place(nonce, Aad::from(kid.as_bytes()), &mut ciphertext)
            .map_err(|_| fail())?;
        Ok(plain.to_vec())
    }
}

fn fill_random(bytes: &mut [u8]) -> Result<()> {
    SystemRandom::new()
        .fill(bytes)
        .map_err(|_| anyhow::anyhow!("no randomness"))
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).context("cannot read it")
}

/// The KEK in `path`, made first if there is none. It is written under a private name and
/// then linked into place, so a process starting at the same time reads either nothing
/// (and makes its own, then reads the winner's) or the whole key, never half of one.
fn generated(path: &Path) -> Result<String> {
    if let Ok(text) = std::fs::read_to_string(path) {
        return Ok(text);
    }
    let mut bytes = [0u8; 32];
    fill_random(&mut bytes)?;
    let tmp: PathBuf = path.with_extension(format!("tmp-{}", uuid::Uuid::new_v4().simple()));
    {
        use std::io::Write;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&tmp).context("cannot create it")?;
        file.write_all(STANDARD.encode(bytes).as_bytes())?;
        file.sync_all()?;
    }
    let linked = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e).context("cannot create it"),
    }
    read(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kek() -> Kek {
        Kek::parse(&STANDARD.encode([7u8; 32])).unwrap()
    }

    #[test]
    fn seals_per_kid() {
        let sealed = kek().seal("kid-1", b"private").unwrap();
        assert!(!sealed.contains(&STANDARD.encode(b"private")));
        assert_eq!(kek().open("kid-1", &sealed).unwrap(), b"private");
        // Moved to another row, or opened with another KEK: refused.
        assert!(kek().open("kid-2", &sealed).is_err());
        let other = Kek::parse(&STANDARD.encode([8u8; 32])).unwrap();
        assert!(other.open("kid-1", &sealed).is_err());
        assert!(kek().open("kid-1", "v1:AAAA").is_err());
    }

    /// A signing key sealed by the aws-lc-rs version (`server admin rotate-keys` on an
    /// empty DATA_DIR, 2026-11-29): ring opens it, and it is the key its row publishes.
    #[test]
    fn opens_keys_sealed_before_the_move_to_ring() {
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        use ed25519_dalek::pkcs8::DecodePrivateKey;
        let kek = Kek::parse("q/Q/ljjs4IOva1/0yKlbR40ACgdiYzNJWZSx5o5MG3A=").unwrap();
        let kid = "01a2289d-abbd-7102-846f-5cbfd0c28912";
        let sealed = "v1:2ydF6gJfHv5Gq4jbe9bZ8sGS5Q0DK80n0hLYJrl8NsR0PTAQcWkGGaS/cWi+XlqGKyypNGb6\
                      lc8BZh1hB+Aqz36Yww4yHcoEfd3qoBddqzVY65GiRnFPzoO7VDsfBdO4xFWa8rsh5ehFH5thgnOm";
        let der = kek.open(kid, sealed).unwrap();
        let key = ed25519_dalek::SigningKey::from_pkcs8_der(&der).unwrap();
        assert_eq!(
            URL_SAFE_NO_PAD.encode(key.verifying_key().to_bytes()),
            "R5Gt66mcMw1AmVUKXzvADuAAkUpNVgJaYCEtHSdlNmU"
        );
        assert!(kek.open("another-kid", sealed).is_err());
    }

    #[test]
    fn refuses_keys_that_are_not_32_bytes() {
        assert!(Kek::parse("change-me").is_err());
        assert!(Kek::parse(&STANDARD.encode([1u8; 16])).is_err());
        assert!(Kek::parse(&format!(" {}\n", STANDARD.encode([1u8; 32]))).is_ok());
    }

    #[test]
    fn a_generated_key_is_private_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(GENERATED_FILE);
        let first = generated(&path).unwrap();
        assert_eq!(generated(&path).unwrap(), first);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
