//! The cryptography behind `jsonwebtoken`: Ed25519 only, on `ed25519-dalek`.
//!
//! Taproom signs and accepts EdDSA tokens and nothing else (see `runtime::auth`).
//! jsonwebtoken's bundled RustCrypto provider would also build RSA, P-256 and P-384
//! (rsa, num-bigint-dig, p256, p384, ecdsa and their field arithmetic), a sizeable part
//! of a fresh release build that no token here can use. This provider answers every other
//! algorithm with an error, so an HS256 or RS256 token is refused here even if a check
//! above it were ever loosened.

use jsonwebtoken::crypto::{CryptoProvider, JwkUtils, JwtSigner, JwtVerifier};
use jsonwebtoken::errors::{Error, ErrorKind};
use jsonwebtoken::signature;
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, EncodingKey};

static PROVIDER: CryptoProvider = CryptoProvider {
    signer_factory,
    verifier_factory,
    jwk_utils: JwkUtils::new_unimplemented(),
};

/// Makes this provider jsonwebtoken's, once per process. Called before every use of
/// jsonwebtoken (it is a cheap check after the first call); when something else got
/// there first (a test crate that enables jsonwebtoken's own `rust_crypto`), that one is
/// kept: it verifies Ed25519 the same way.
pub fn install() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = PROVIDER.install_default();
    });
}

fn signer_factory(alg: &Algorithm, key: &EncodingKey) -> Result<Box<dyn JwtSigner>, Error> {
    use ed25519_dalek::pkcs8::DecodePrivateKey;
    if *alg != Algorithm::EdDSA {
        return Err(ErrorKind::InvalidAlgorithm.into());
    }
    if key.family() != AlgorithmFamily::Ed {
        return Err(ErrorKind::InvalidKeyFormat.into());
    }
    let key = ed25519_dalek::SigningKey::from_pkcs8_der(key.inner())
        .map_err(|_| ErrorKind::InvalidEddsaKey)?;
    Ok(Box::new(Ed25519Signer(key)))
}

fn verifier_factory(alg: &Algorithm, key: &DecodingKey) -> Result<Box<dyn JwtVerifier>, Error> {
    if *alg != Algorithm::EdDSA {
        return Err(ErrorKind::InvalidAlgorithm.into());
    }
    if key.family() != AlgorithmFamily::Ed {
        return Err(ErrorKind::InvalidKeyFormat.into());
    }
    // Exactly the 32 raw bytes of a public key: a short or long `x` is refused, never
    // sliced.
    let bytes = <&[u8; 32]>::try_from(key.as_bytes()).map_err(|_| ErrorKind::InvalidEddsaKey)?;
    let key =
        ed25519_dalek::VerifyingKey::from_bytes(bytes).map_err(|_| ErrorKind::InvalidEddsaKey)?;
    Ok(Box::new(Ed25519Verifier(key)))
}

struct Ed25519Signer(ed25519_dalek::SigningKey);

impl signature::Signer<Vec<u8>> for Ed25519Signer {
    fn try_sign(&self, msg: &[u8]) -> Result<Vec<u8>, signature::Error> {
        Ok(self.0.sign(msg).to_bytes().to_vec())
    }
}

impl JwtSigner for Ed25519Signer {
    fn algorithm(&self) -> Algorithm {
        Algorithm::EdDSA
    }
}

struct Ed25519Verifier(ed25519_dalek::VerifyingKey);

impl signature::Verifier<Vec<u8>> for Ed25519Verifier {
    fn verify(&self, msg: &[u8], sig: &Vec<u8>) -> Result<(), signature::Error> {
        let sig = ed25519_dalek::Signature::from_slice(sig)?;
        // Strict: no malleable signatures, no small-order keys.
        self.0.verify_strict(msg, &sig)
    }
}

impl JwtVerifier for Ed25519Verifier {
    fn algorithm(&self) -> Algorithm {
        Algorithm::EdDSA
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::pkcs8::EncodePrivateKey;

    // The factories directly: the process-wide provider of a test binary may be
    // jsonwebtoken's own when another crate of the build enables it.
    fn sign(alg: Algorithm, key: &EncodingKey, msg: &[u8]) -> Result<Vec<u8>, Error> {
        Ok(signer_factory(&alg, key)?.try_sign(msg).unwrap())
    }

    fn verify(alg: Algorithm, key: &DecodingKey, msg: &[u8], sig: &[u8]) -> Result<bool, Error> {
        Ok(verifier_factory(&alg, key)?
            .verify(msg, &sig.to_vec())
            .is_ok())
    }

    #[test]
    fn signs_and_verifies_ed25519_and_nothing_else() {
        let signing = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
        let enc = EncodingKey::from_ed_der(signing.to_pkcs8_der().unwrap().as_bytes());
        let dec = DecodingKey::from_ed_der(signing.verifying_key().as_bytes());
        let sig = sign(Algorithm::EdDSA, &enc, b"header.payload").unwrap();
        assert!(verify(Algorithm::EdDSA, &dec, b"header.payload", &sig).unwrap());
        assert!(!verify(Algorithm::EdDSA, &dec, b"header.payloaX", &sig).unwrap());
        assert!(!verify(Algorithm::EdDSA, &dec, b"header.payload", &sig[..63]).unwrap());

        let secret = EncodingKey::from_secret(b"secret");
        for alg in [
            Algorithm::HS256,
            Algorithm::RS256,
            Algorithm::ES256,
            Algorithm::PS512,
        ] {
            assert!(sign(alg, &secret, b"m").is_err(), "{alg:?}");
            assert!(sign(alg, &enc, b"m").is_err(), "{alg:?}");
            assert!(
                verify(alg, &dec, b"header.payload", &sig).is_err(),
                "{alg:?}"
            );
        }
        // An HMAC secret is never taken for an Ed25519 key, and a key of the wrong length
        // is refused rather than cut to size.
        assert!(sign(Algorithm::EdDSA, &secret, b"m").is_err());
        let hmac = DecodingKey::from_secret(&[1; 32]);
        assert!(verify(Algorithm::EdDSA, &hmac, b"header.payload", &sig).is_err());
        for len in [31, 33] {
            let odd = DecodingKey::from_ed_der(&vec![1; len]);
            assert!(verify(Algorithm::EdDSA, &odd, b"header.payload", &sig).is_err());
        }
    }
}
