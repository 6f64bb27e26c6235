//! Money as integer cents. Amounts cross the API as decimal strings with exactly two
//! places ("4.50"); they are never floating point, so sums are exact.

/// `"4.50"` -> 450. Anything but digits, one dot and exactly two decimals is refused
/// (the spec's pattern already says so; this keeps the store honest on its own).
pub fn parse_cents(text: &str) -> Option<i64> {
    let (units, cents) = text.split_once('.')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(units) || cents.len() != 2 || !digits(cents) || units.len() > 15 {
        return None;
    }
    Some(units.parse::<i64>().ok()? * 100 + cents.parse::<i64>().ok()?)
}

/// 450 -> `"4.50"`.
pub fn format_cents(cents: i64) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let cents = cents.unsigned_abs();
    format!("{sign}{}.{:02}", cents / 100, cents % 100)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_exactly() {
        for (text, cents) in [
            ("0.01", 1),
            ("4.50", 450),
            ("999999.99", 99_999_999),
            ("0.30", 30),
        ] {
            assert_eq!(parse_cents(text), Some(cents));
            assert_eq!(format_cents(cents), text);
        }
        assert_eq!(format_cents(-5), "-0.05");
    }

    #[test]
    fn refuses_what_is_not_two_place_decimal() {
        for bad in [
            "4.5", "4.505", "-1", "-1.00", "1e3", "", ".50", "4.", "4,50", " 4.50", "+4.50", "4.5x",
        ] {
            assert_eq!(parse_cents(bad), None, "{bad:?}");
        }
    }
}
