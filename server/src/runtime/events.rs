//! Authenticating events between services. Every event carries an HMAC-SHA256 of its
//! body under the shared `EVENTS_TOKEN`, in the `Taproom-Signature` header of the HTTP
//! request or of the NATS message, and receivers verify it before acting. Over HTTP the
//! token also authenticates the sender (bearer); over NATS anyone who may publish to the
//! stream could otherwise forge events, so the signature is what makes an event count.

use anyhow::Result;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The header, on HTTP requests and NATS messages alike.
pub const SIGNATURE_HEADER: &str = "Taproom-Signature";

/// The value the deploy files carry until someone replaces it: known to everyone who
/// has read them, so it is refused like a short token.
pub const PLACEHOLDER_TOKEN: &str = "change-me-to-a-long-random-secret";

/// The shortest `EVENTS_TOKEN` accepted: 32 bytes, as much as the HMAC's output.
pub const MIN_TOKEN_BYTES: usize = 32;

const PREFIX: &str = "sha256=";

fn mac(secret: &str) -> Hmac<Sha256> {
    Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length")
}

/// The signature of `body` (the bytes as sent): `sha256=<64 hex digits>`.
pub fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = mac(secret);
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let mut out = String::with_capacity(PREFIX.len() + 64);
    out.push_str(PREFIX);
    for byte in digest {
        out.push_str(&format!("{byte:02x}"));
    }
    out
}

/// Whether `signature` is `body`'s under `secret`, compared in constant time. A missing
/// or malformed signature is simply not valid.
pub fn verify(secret: &str, body: &[u8], signature: Option<&str>) -> bool {
    let Some(hex) = signature.and_then(|s| s.trim().strip_prefix(PREFIX)) else {
        return false;
    };
    if hex.len() != 64 || !hex.is_ascii() {
        return false;
    }
    let bytes: Option<Vec<u8>> = (0..32)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok())
        .collect();
    let Some(bytes) = bytes else {
        return false;
    };
    let mut mac = mac(secret);
    mac.update(body);
    mac.verify_slice(&bytes).is_ok()
}

/// Refuses an `EVENTS_TOKEN` that an attacker could guess: shorter than 32 bytes, or the
/// deploy files' placeholder.
pub fn check_token(token: &str) -> Result<()> {
    anyhow::ensure!(
        token != PLACEHOLDER_TOKEN,
        "EVENTS_TOKEN is the placeholder from the deploy files; set a random secret \
         (e.g. `openssl rand -hex 32`)"
    );
    anyhow::ensure!(
        token.len() >= MIN_TOKEN_BYTES,
        "EVENTS_TOKEN is {} bytes long; it must be at least {MIN_TOKEN_BYTES} \
         (e.g. `openssl rand -hex 32`)",
        token.len()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_only_for_their_body_and_key() {
        let key = "k".repeat(32);
        let sig = sign(&key, b"{\"a\":1}");
        assert!(sig.starts_with("sha256=") && sig.len() == 71);
        assert!(verify(&key, b"{\"a\":1}", Some(&sig)));
        assert!(!verify(&key, b"{\"a\":2}", Some(&sig)));
        assert!(!verify(&"x".repeat(32), b"{\"a\":1}", Some(&sig)));
        assert!(!verify(&key, b"{\"a\":1}", None));
        assert!(!verify(&key, b"{\"a\":1}", Some("sha256=zz")));
        assert!(!verify(
            &key,
            b"{\"a\":1}",
            Some(&sig.replace("sha256=", "md5="))
        ));
        // Multi-byte text of the right length must not panic on slicing.
        assert!(!verify(
            &key,
            b"",
            Some(&format!("sha256={}", "é".repeat(32)))
        ));
    }

    #[test]
    fn weak_tokens_are_refused() {
        assert!(check_token("short").is_err());
        assert!(check_token(&"a".repeat(31)).is_err());
        assert!(check_token(&"a".repeat(32)).is_ok());
        let placeholder = check_token(PLACEHOLDER_TOKEN).unwrap_err().to_string();
        assert!(placeholder.contains("placeholder"), "{placeholder}");
        // The placeholder is the one the deploy files really carry.
        assert!(include_str!("../../../deploy/k8s/config.yaml").contains(PLACEHOLDER_TOKEN));
    }
}
