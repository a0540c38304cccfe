//! HTTP-date: the timestamps in `Date`, `Last-Modified`, `Expires` and
//! `If-Modified-Since` (RFC 9110 §5.6.7).
//!
//! This module owns the conversion between [`SystemTime`] and the three textual
//! forms of an HTTP-date. We always *send* the preferred IMF-fixdate form and
//! *accept* all three, as RFC 9110 §5.6.7 requires of recipients. Calendar
//! arithmetic is delegated to `chrono`; this module only picks the formats and
//! applies the RFC's two-digit-year rule. It does not decide what a date means
//! for caching or conditional requests: that is `cache` and `conditional`.
//!
//! Deliberate choices, so nobody has to rediscover them:
//! - a weekday that does not match the date is rejected (chrono checks it);
//! - we are lenient where chrono is, as a recipient may be: day and month
//!   names in any case, runs of spaces, missing zero padding (`6 Nov`,
//!   `8:49:37`) and a leap second `:60` (read as `:59`) are accepted, although
//!   RFC 9110 §5.6.7 says HTTP-date is case-sensitive; the literal `GMT` is
//!   still required exactly;
//! - dates before 1970 are supported in both directions (the year must still
//!   have four digits when formatting: times outside years 0001..=9999 are
//!   clamped to the nearest representable second).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrono::{DateTime, Datelike, NaiveDateTime};

/// Earliest instant `format_http_date` can write: 0001-01-01T00:00:00Z, in
/// seconds relative to the Unix epoch (IMF-fixdate has a four-digit year).
const MIN_FORMAT_SECS: i64 = -62_135_596_800;

/// Latest instant `format_http_date` can write: 9999-12-31T23:59:59Z, in
/// seconds relative to the Unix epoch.
const MAX_FORMAT_SECS: i64 = 253_402_300_799;

/// Upper bound, in bytes, on a field value we try to parse as a date. The
/// longest valid form (RFC 850 with "Wednesday") is 37 bytes; anything much
/// longer is garbage and is rejected without handing it to the parser.
const MAX_DATE_BYTES: usize = 64;

/// IMF-fixdate, e.g. `Sun, 06 Nov 1994 08:49:37 GMT`.
const IMF_FIXDATE: &str = "%a, %d %b %Y %H:%M:%S GMT";

/// Obsolete RFC 850 form, after we have widened the year to four digits, e.g.
/// `Sunday, 06-Nov-1994 08:49:37 GMT`.
const RFC850_WIDENED: &str = "%A, %d-%b-%Y %H:%M:%S GMT";

/// ANSI C `asctime()` form, e.g. `Sun Nov  6 08:49:37 1994`.
const ASCTIME: &str = "%a %b %e %H:%M:%S %Y";

/// Formats `t` as an IMF-fixdate, the preferred HTTP-date form.
///
/// ```text
/// IMF-fixdate = day-name "," SP date1 SP time-of-day SP GMT
///             ; fixed length/zone/capitalization subset of RFC 5322
/// date1       = day SP month SP year   ; e.g., 02 Jun 1982
/// ```
/// (RFC 9110 §5.6.7.) Sub-second precision is dropped (the time is rounded
/// down to the second). Times outside years 0001..=9999 are clamped.
pub fn format_http_date(t: SystemTime) -> String {
    let (secs, _) = to_unix(t);
    let secs = secs.clamp(MIN_FORMAT_SECS, MAX_FORMAT_SECS);
    match DateTime::from_timestamp(secs, 0) {
        Some(dt) => dt.format(IMF_FIXDATE).to_string(),
        // Unreachable: the clamp keeps `secs` inside chrono's range.
        None => "Thu, 01 Jan 1970 00:00:00 GMT".to_owned(),
    }
}

/// Parses an HTTP-date in any of the three forms RFC 9110 §5.6.7 makes
/// recipients accept; returns `None` for anything else.
///
/// ```text
/// HTTP-date    = IMF-fixdate / obs-date
/// obs-date     = rfc850-date / asctime-date
/// rfc850-date  = day-name-l "," SP date2 SP time-of-day SP GMT
/// date2        = day "-" month "-" 2DIGIT   ; e.g., 02-Jun-82
/// asctime-date = day-name SP date3 SP time-of-day SP year
/// date3        = month SP ( 2DIGIT / ( SP DIGIT ) )   ; e.g., Jun  2
/// ```
/// Surrounding whitespace is trimmed. A two-digit RFC 850 year is placed in
/// the century that keeps it no more than 50 years in the future of the
/// current clock (RFC 9110 §5.6.7). Dates before 1970 are accepted.
pub fn parse_http_date(s: &str) -> Option<SystemTime> {
    parse_http_date_in(s, current_year())
}

/// [`parse_http_date`] with the current year passed in, so the two-digit-year
/// rule can be tested without depending on the clock.
fn parse_http_date_in(s: &str, now_year: i32) -> Option<SystemTime> {
    let s = s.trim();
    if s.is_empty() || s.len() > MAX_DATE_BYTES || !s.is_ascii() {
        return None;
    }
    let naive = NaiveDateTime::parse_from_str(s, IMF_FIXDATE)
        .ok()
        .or_else(|| parse_rfc850(s, now_year))
        .or_else(|| parse_asctime(s))?;
    from_unix(naive.and_utc().timestamp())
}

/// Parses the obsolete RFC 850 form. chrono's `%y` uses a fixed pivot year
/// (1969), not the sliding window RFC 9110 §5.6.7 asks for, so we widen the
/// two-digit year ourselves and parse the result with `%Y`:
///
/// > Recipients of a timestamp value in rfc850-date format, which uses a
/// > two-digit year, MUST interpret a timestamp that appears to be more than 50
/// > years in the future as representing the most recent year in the past that
/// > had the same last two digits.
///
/// We read "appears to be" as the window `now_year - 49 ..= now_year + 50`.
fn parse_rfc850(s: &str, now_year: i32) -> Option<NaiveDateTime> {
    // "Sunday, 06-Nov-94 08:49:37 GMT": the year is the two bytes before the
    // first space after the comma.
    let comma = s.find(", ")?;
    let date_start = comma + 2;
    let date_end = date_start + s[date_start..].find(' ')?;
    let date2 = &s[date_start..date_end];
    let yy = date2.rsplit('-').next()?;
    if yy.len() != 2 || !yy.bytes().all(|b| b.is_ascii_digit()) || date2.len() != 9 {
        return None;
    }
    let yy: i32 = yy.parse().ok()?;
    let mut year = now_year - now_year.rem_euclid(100) + yy;
    if year > now_year + 50 {
        year -= 100;
    } else if year <= now_year - 50 {
        year += 100;
    }
    let widened = format!("{}{}{}", &s[..date_end - 2], year, &s[date_end..]);
    NaiveDateTime::parse_from_str(&widened, RFC850_WIDENED).ok()
}

/// Parses the `asctime()` form, whose day of month is padded with a space
/// (`Nov  6`). chrono's `%e` accepts that padding.
fn parse_asctime(s: &str) -> Option<NaiveDateTime> {
    NaiveDateTime::parse_from_str(s, ASCTIME).ok()
}

/// Splits `t` into whole seconds since the Unix epoch (rounded towards
/// negative infinity, so negative before 1970) and the nanoseconds within
/// that second. Saturates at `i64::MIN`/`i64::MAX` seconds.
pub(crate) fn to_unix(t: SystemTime) -> (i64, u32) {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => (
            i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            d.subsec_nanos(),
        ),
        Err(e) => {
            let d = e.duration();
            let secs = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
            if d.subsec_nanos() == 0 {
                (-secs, 0)
            } else {
                ((-secs).saturating_sub(1), 1_000_000_000 - d.subsec_nanos())
            }
        }
    }
}

/// The instant `secs` seconds after (or, if negative, before) the Unix epoch;
/// `None` if the platform's `SystemTime` cannot represent it.
fn from_unix(secs: i64) -> Option<SystemTime> {
    let magnitude = Duration::from_secs(secs.unsigned_abs());
    if secs >= 0 {
        UNIX_EPOCH.checked_add(magnitude)
    } else {
        UNIX_EPOCH.checked_sub(magnitude)
    }
}

/// The current UTC year, from the system clock.
fn current_year() -> i32 {
    let (secs, _) = to_unix(SystemTime::now());
    DateTime::from_timestamp(secs.clamp(MIN_FORMAT_SECS, MAX_FORMAT_SECS), 0)
        .map_or(1970, |dt| dt.year())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 1994-11-06T08:49:37Z, the RFC's example instant.
    const EXAMPLE_SECS: i64 = 784_111_777;

    fn at(secs: i64) -> SystemTime {
        from_unix(secs).unwrap()
    }

    #[test]
    fn formats_imf_fixdate() {
        assert_eq!(
            format_http_date(at(EXAMPLE_SECS)),
            "Sun, 06 Nov 1994 08:49:37 GMT"
        );
        assert_eq!(
            format_http_date(UNIX_EPOCH),
            "Thu, 01 Jan 1970 00:00:00 GMT"
        );
    }

    #[test]
    fn format_drops_subseconds() {
        let t = at(EXAMPLE_SECS) + Duration::from_millis(999);
        assert_eq!(format_http_date(t), "Sun, 06 Nov 1994 08:49:37 GMT");
    }

    #[test]
    fn format_before_1970_rounds_down() {
        let t = UNIX_EPOCH - Duration::from_millis(500);
        assert_eq!(format_http_date(t), "Wed, 31 Dec 1969 23:59:59 GMT");
    }

    #[test]
    fn format_clamps_far_future() {
        let t = UNIX_EPOCH + Duration::from_secs(u64::MAX / 4);
        assert_eq!(format_http_date(t), "Fri, 31 Dec 9999 23:59:59 GMT");
    }

    #[test]
    fn parses_imf_fixdate() {
        assert_eq!(
            parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(at(EXAMPLE_SECS))
        );
    }

    #[test]
    fn parses_rfc850() {
        assert_eq!(
            parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT"),
            Some(at(EXAMPLE_SECS))
        );
    }

    #[test]
    fn parses_asctime() {
        assert_eq!(
            parse_http_date("Sun Nov  6 08:49:37 1994"),
            Some(at(EXAMPLE_SECS))
        );
        assert_eq!(
            parse_http_date("Thu Nov 10 08:49:37 1994"),
            Some(at(EXAMPLE_SECS + 4 * 86_400))
        );
    }

    #[test]
    fn trims_surrounding_whitespace() {
        assert_eq!(
            parse_http_date(" \tSun, 06 Nov 1994 08:49:37 GMT  "),
            Some(at(EXAMPLE_SECS))
        );
    }

    #[test]
    fn two_digit_year_uses_sliding_window() {
        // In 2025, "94" is 69 years ahead as 2094, so it means 1994.
        let t = parse_http_date_in("Sunday, 06-Nov-94 08:49:37 GMT", 2025);
        assert_eq!(t, Some(at(EXAMPLE_SECS)));
        // "30" in 2025 is five years ahead: 2030 (a Wednesday).
        let t = parse_http_date_in("Wednesday, 06-Nov-30 00:00:00 GMT", 2025);
        assert_eq!(
            format_http_date(t.unwrap()),
            "Wed, 06 Nov 2030 00:00:00 GMT"
        );
        // In 2080, "10" is 70 years back as 2010, so it means 2110.
        let t = parse_http_date_in("Thursday, 06-Nov-10 00:00:00 GMT", 2080);
        assert_eq!(
            format_http_date(t.unwrap()),
            "Thu, 06 Nov 2110 00:00:00 GMT"
        );
        // The real clock: 1994 is in the window until 2043.
        assert!(current_year() >= 2024);
    }

    #[test]
    fn round_trips() {
        for secs in [
            0,
            1,
            EXAMPLE_SECS,
            951_782_400,
            1_700_000_000,
            4_102_444_800,
        ] {
            let text = format_http_date(at(secs));
            assert_eq!(parse_http_date(&text), Some(at(secs)), "{text}");
        }
    }

    #[test]
    fn parses_dates_before_1970() {
        assert_eq!(
            parse_http_date("Wed, 31 Dec 1969 23:59:59 GMT"),
            Some(at(-1))
        );
    }

    #[test]
    fn rejects_empty_and_whitespace() {
        assert_eq!(parse_http_date(""), None);
        assert_eq!(parse_http_date("   "), None);
    }

    #[test]
    fn rejects_garbage() {
        for bad in [
            "garbage",
            "Sun, 06 Nov 1994 08:49:37",        // no zone
            "Sun, 06 Nov 1994 08:49:37 UTC",    // wrong zone
            "Sun, 06 Nov 1994 08:49:37 GMT x",  // trailing junk
            "Mon, 06 Nov 1994 08:49:37 GMT",    // wrong weekday
            "Sun, 31 Nov 1994 08:49:37 GMT",    // no such day
            "Sun, 06 Nov 1994 24:49:37 GMT",    // no such hour
            "Sun, 06 Foo 1994 08:49:37 GMT",    // no such month
            "Sunday, 06-Nov-1994 08:49:37 GMT", // rfc850 needs 2 digits
            "Sunday, 06-Nov-9 08:49:37 GMT",    // one digit
            "Sunday, 06-Nov-9x 08:49:37 GMT",   // not a digit
            "Sun Nov  6 08:49:37 94",           // asctime needs 4 digits
            "1994-11-06T08:49:37Z",             // ISO 8601 is not HTTP
            "784111777",                        // neither is a timestamp
            "Sun, 06 Nov 1994 08:49:37 GMT, Sun, 06 Nov 1994 08:49:37 GMT",
            "Sün, 06 Nov 1994 08:49:37 GMT", // non-ASCII
            ", -",
            "Sunday, ",
        ] {
            assert_eq!(parse_http_date(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn rejects_overlong_input() {
        let long = format!("Sun, 06 Nov 1994 08:49:37 GMT{}", " ".repeat(1000) + "x");
        assert_eq!(parse_http_date(&long), None);
    }

    #[test]
    fn to_unix_splits_before_epoch() {
        let t = UNIX_EPOCH - Duration::from_millis(1500);
        assert_eq!(to_unix(t), (-2, 500_000_000));
        assert_eq!(to_unix(UNIX_EPOCH - Duration::from_secs(3)), (-3, 0));
    }
}
