//! Strong entity tags and conditional requests (RFC 9110 §13). A representation's ETag
//! is a hash of its JSON, so any change of what a client would see changes the tag, for
//! single resources and list pages alike. `If-None-Match` on GET is answered by the
//! response hook (`runtime::http`); `If-Match` is checked by handlers before they write.

use super::Problem;
use dropshot::{HttpResponseHeaders, HttpResponseOk};
use serde::Serialize;
use sha2::{Digest, Sha256};

/// The strong ETag of `value`'s JSON representation, quoted.
pub fn of<T: Serialize>(value: &T) -> String {
    let json = serde_json::to_vec(value).unwrap_or_default();
    let digest = Sha256::digest(&json);
    // 128 bits are plenty to tell versions of one resource apart.
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("\"{hex}\"")
}

/// A 200 response carrying `value` and its ETag.
pub fn ok<T: Serialize + schemars::JsonSchema + Send + Sync + 'static>(
    value: T,
) -> HttpResponseHeaders<HttpResponseOk<T>> {
    let tag = of(&value);
    let mut response = HttpResponseHeaders::new_unnamed(HttpResponseOk(value));
    if let Ok(tag) = http::HeaderValue::from_str(&tag) {
        response.headers_mut().insert(http::header::ETAG, tag);
    }
    response
}

/// The entity tags of an `If-Match` / `If-None-Match` value; `None` for `*` (any).
fn tags(list: &str) -> Option<Vec<&str>> {
    if list.trim() == "*" {
        return None;
    }
    Some(
        list.split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .collect(),
    )
}

/// Whether `If-None-Match: list` matches `current` (weak comparison: `W/` ignored).
pub fn none_match_hits(list: &str, current: &str) -> bool {
    let current = current.trim_start_matches("W/");
    match tags(list) {
        None => true,
        Some(tags) => tags.iter().any(|t| t.trim_start_matches("W/") == current),
    }
}

/// `If-Match` (strong comparison: a weak tag never matches): `Ok` when absent or when it
/// names `current`; otherwise the 412 problem to return.
pub fn check_if_match(if_match: Option<&str>, current: &str) -> Result<(), Problem> {
    let Some(list) = if_match else {
        return Ok(());
    };
    let hit = match tags(list) {
        None => true,
        Some(tags) => tags.contains(&current),
    };
    if hit {
        Ok(())
    } else {
        Err(precondition_failed())
    }
}

/// 412: the resource changed since the client read it.
pub fn precondition_failed() -> Problem {
    Problem::new(
        412,
        "The resource has changed since it was read (If-Match names no current ETag); read it again and retry.",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_follow_the_representation() {
        let a = of(&serde_json::json!({"price": "4.50"}));
        assert_eq!(a, of(&serde_json::json!({"price": "4.50"})));
        assert_ne!(a, of(&serde_json::json!({"price": "4.51"})));
        assert!(a.starts_with('"') && a.ends_with('"') && a.len() == 34);
    }

    #[test]
    fn conditional_headers_compare_as_rfc_9110_says() {
        let tag = "\"abc\"";
        assert!(none_match_hits("\"x\", \"abc\"", tag));
        assert!(none_match_hits("W/\"abc\"", tag));
        assert!(none_match_hits("*", tag));
        assert!(!none_match_hits("\"abd\"", tag));
        assert!(check_if_match(None, tag).is_ok());
        assert!(check_if_match(Some("\"abc\""), tag).is_ok());
        assert!(check_if_match(Some("*"), tag).is_ok());
        assert_eq!(
            check_if_match(Some("W/\"abc\""), tag).unwrap_err().status,
            412
        );
        assert_eq!(
            check_if_match(Some("\"old\""), tag).unwrap_err().status,
            412
        );
    }
}
