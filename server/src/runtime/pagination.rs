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

/// One list request's page: where it starts (after the id a `page_token` names) and how
/// long it is. Stores fetch `fetch_limit()` rows in id order after `after`; `page` cuts
/// them to the page and says where the next one starts. Every list operation pages so.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub after: Option<Uuid>,
    pub limit: u32,
}

impl Window {
    /// From the `page_token` and `limit` query parameters (the spec bounds `limit`); a
    /// token of the wrong shape is a 400 problem pointing at it.
    pub fn of(
        page_token: Option<&str>,
        limit: Option<u32>,
        request_id: &str,
    ) -> Result<Window, super::Problem> {
        let after = match page_token {
            None => None,
            Some(token) => Some(decode(token).ok_or_else(|| {
                super::Problem::validation(vec![super::FieldError {
                    pointer: "/query/page_token".into(),
                    message: "is not a page token this service issued".into(),
                }])
                .request(request_id)
            })?),
        };
        Ok(Window {
            after,
            limit: limit.unwrap_or(DEFAULT_LIMIT),
        })
    }

    /// The bound for the store's query: one more than the page, to know whether more follow.
    pub fn fetch_limit(&self) -> i64 {
        i64::from(self.limit) + 1
    }

    /// `after` as the stores bind it (the empty string sorts before every id).
    pub fn after_text(&self) -> String {
        self.after.map(|u| u.to_string()).unwrap_or_default()
    }

    /// The page out of what the store fetched (up to `fetch_limit()` items in id order),
    /// and `next_page_token` when more follow.
    pub fn page<T>(&self, mut items: Vec<T>, id: impl Fn(&T) -> Uuid) -> (Vec<T>, Option<String>) {
        let more = items.len() > self.limit as usize;
        items.truncate(self.limit as usize);
        let next = if more {
            items.last().map(|i| encode(id(i)))
        } else {
            None
        };
        (items, next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_pages_and_points_at_the_next_page() {
        let window = Window::of(None, Some(2), "r").unwrap();
        assert_eq!(window.fetch_limit(), 3);
        let ids: Vec<Uuid> = (0..3).map(|_| Uuid::now_v7()).collect();
        let (page, next) = window.page(ids.clone(), |i| *i);
        assert_eq!(page, ids[..2]);
        assert_eq!(next.as_deref().and_then(decode), Some(ids[1]));
        let (page, next) = window.page(ids[..2].to_vec(), |i| *i);
        assert_eq!((page.len(), next), (2, None));
        let after = Window::of(Some(&encode(ids[0])), None, "r").unwrap();
        assert_eq!((after.after, after.limit), (Some(ids[0]), DEFAULT_LIMIT));
        assert_eq!(Window::of(Some("nope"), None, "r").unwrap_err().status, 400);
    }

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
