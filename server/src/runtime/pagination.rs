//! Keyset pagination tokens, shared by every list operation: the id of the last item of
//! the previous page (a UUIDv7, so id order is creation order), base64url without
//! padding. Exactly 22 characters of `[A-Za-z0-9_-]`, as `common.yaml` documents: any
//! string of that shape is a position, so a well-formed token is never refused.

use base64::alphabet::URL_SAFE;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine;
use uuid::Uuid;

const ENGINE: GeneralPurpose = GeneralPurpose::new(
    &URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::RequireNone)
        .with_decode_allow_trailing_bits(true),
);

/// Default and bounds of `limit` (common.yaml's `Limit` parameter).
pub const DEFAULT_LIMIT: u32 = 20;

pub fn encode(last: Uuid) -> String {
    ENGINE.encode(last.as_bytes())
}

/// `None` when `token` is not a token of this shape.
pub fn decode(token: &str) -> Option<Uuid> {
    let bytes = ENGINE.decode(token).ok()?;
    Uuid::from_slice(&bytes).ok()
}

/// The position a `page_token` query parameter names, or a 400 problem pointing at it.
pub fn position(token: Option<&str>, request_id: &str) -> Result<Option<Uuid>, super::Problem> {
    match token {
        None => Ok(None),
        Some(token) => decode(token).map(Some).ok_or_else(|| {
            super::Problem::validation(vec![super::FieldError {
                pointer: "/query/page_token".into(),
                message: "is not a page token this service issued".into(),
            }])
            .request(request_id)
        }),
    }
}

/// `next_page_token` for a page whose last item has id `last`, when more follow.
pub fn next(last: Option<Uuid>, more: bool) -> Option<String> {
    if more {
        last.map(encode)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_accepts_every_well_formed_token() {
        let id = Uuid::now_v7();
        let token = encode(id);
        assert_eq!(token.len(), 22);
        assert_eq!(decode(&token), Some(id));
        // Trailing bits that encode() would never set still name a position.
        assert!(decode("zzzzzzzzzzzzzzzzzzzzzz").is_some());
        assert!(decode("AAAAAAAAAAAAAAAAAAAAA-").is_some());
        for bad in [
            "",
            "short",
            "!!!!!!!!!!!!!!!!!!!!!!",
            "AAAAAAAAAAAAAAAAAAAAAAAA",
            "AAAAAAAAAAAAAAAAAAAAAA==",
        ] {
            assert_eq!(decode(bad), None, "{bad:?}");
        }
    }
}
