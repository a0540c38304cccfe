//! HTTP-date: the timestamps in `Date`, `Last-Modified`, `Expires` and
//! `If-Modified-Since` (RFC 9110 §5.6.7).
//!
//! This module owns the conversion between [`SystemTime`] and the three textual
//! forms of an HTTP-date. We always *send* the preferred IMF-fixdate form and
//! *accept* all three, as RFC 9110 §5.6.7 requires of recipients. Calendar
//! arithmetic is delegated to `chrono`; this module reads the three forms field
//! by field and applies the RFC's two-digit-year rule. It does not decide what a date means
//! for caching or conditional requests: that is `cache` and `conditional`.
//!
//! Deliberate choices, so nobody has to rediscover them:
//! - the shape of each form is checked exactly: single spaces, two-digit day, hour, minute
//!   and second (`6 Nov`, `8:49:37` and doubled spaces are refused), a four-digit year
//!   (two digits in the RFC 850 form only). The HTTP caching test suite (cache-tests.fyi)
//!   expects an `Expires` such as `Thu, 18 Aug 2050 2:01:18 GMT` to be invalid, hence
//!   already expired (RFC 9111 §5.3), and we have one date parser for every field;
//! - we are lenient where the suite finds the deployed caches lenient, and where no
//!   ambiguity follows: day and month names and `GMT` in any case, although RFC 9110 §5.6.7
//!   says HTTP-date is case-sensitive; a day name that does not match the date is ignored
//!   (the date says which day it is; the name is redundant), and a leap second `:60` is
//!   read as `:59`;
//! - dates before 1970 are supported in both directions (the year must still
//!   have four digits when formatting: times outside years 0001..=9999 are
//!   clamped to the nearest representable second).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrono::{DateTime, Datelike, NaiveDate};

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

/// Day names as IMF-fixdate and asctime write them.
const DAY_NAMES: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

/// Day names as RFC 850 writes them.
const LONG_DAY_NAMES: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];

/// Month names, January first.
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

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
    let fields: Vec<&str> = s.split(' ').collect();
    let (year, month, day, time) = match fields[..] {
        // asctime: `Sun Nov  6 08:49:37 1994` splits with an empty field before a
        // one-digit day, `Thu Nov 10 08:49:37 1994` without.
        [day_name, month, "", day, time, year] if day.len() == 1 => {
            is_one_of(day_name, &DAY_NAMES)?;
            (four_digits(year)?, month_number(month)?, digits(day)?, time)
        }
        [day_name, day, month, year, time, zone] => {
            let name = day_name.strip_suffix(',')?;
            is_one_of(name, &DAY_NAMES)?;
            is_gmt(zone)?;
            (
                four_digits(year)?,
                month_number(month)?,
                two_digits(day)?,
                time,
            )
        }
        [day_name, date2, time, zone] => {
            let name = day_name.strip_suffix(',')?;
            is_one_of(name, &LONG_DAY_NAMES)?;
            is_gmt(zone)?;
            let (day, month, year) = rfc850_date(date2, now_year)?;
            (year, month, day, time)
        }
        [day_name, month, day, time, year] => {
            is_one_of(day_name, &DAY_NAMES)?;
            (
                four_digits(year)?,
                month_number(month)?,
                two_digits(day)?,
                time,
            )
        }
        _ => return None,
    };
    let (hour, minute, second) = time_of_day(time)?;
    let date = NaiveDate::from_ymd_opt(i32::try_from(year).ok()?, month, day)?;
    // A leap second is read as the second before it.
    let moment = date.and_hms_opt(hour, minute, second.min(59))?;
    from_unix(moment.and_utc().timestamp())
}

/// `date2 = day "-" month "-" 2DIGIT` of the obsolete RFC 850 form, as (day, month, year).
/// The two-digit year is placed by RFC 9110 §5.6.7's rule:
///
/// > Recipients of a timestamp value in rfc850-date format, which uses a
/// > two-digit year, MUST interpret a timestamp that appears to be more than 50
/// > years in the future as representing the most recent year in the past that
/// > had the same last two digits.
///
/// We read "appears to be" as the window `now_year - 49 ..= now_year + 50`.
fn rfc850_date(date2: &str, now_year: i32) -> Option<(u32, u32, u32)> {
    let mut parts = date2.split('-');
    let (day, month, yy) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || yy.len() != 2 {
        return None;
    }
    let yy = i32::try_from(digits(yy)?).ok()?;
    let mut year = now_year - now_year.rem_euclid(100) + yy;
    if year > now_year + 50 {
        year -= 100;
    } else if year <= now_year - 50 {
        year += 100;
    }
    let year = u32::try_from(year).ok()?;
    Some((two_digits(day)?, month_number(month)?, year))
}

/// `time-of-day = hour ":" minute ":" second`, two digits each: hour 0..=23, minute
/// 0..=59, second 0..=60 (a leap second).
fn time_of_day(text: &str) -> Option<(u32, u32, u32)> {
    let mut parts = text.split(':');
    let hour = two_digits(parts.next()?)?;
    let minute = two_digits(parts.next()?)?;
    let second = two_digits(parts.next()?)?;
    let valid = parts.next().is_none() && hour < 24 && minute < 60 && second <= 60;
    valid.then_some((hour, minute, second))
}

/// `Some(())` when `name` is one of `names`, in any case.
fn is_one_of(name: &str, names: &[&str]) -> Option<()> {
    names
        .iter()
        .any(|n| n.eq_ignore_ascii_case(name))
        .then_some(())
}

/// `Some(())` for the zone `GMT`, in any case.
fn is_gmt(zone: &str) -> Option<()> {
    zone.eq_ignore_ascii_case("GMT").then_some(())
}

/// The month's number (1..=12) of a three-letter month name, in any case.
fn month_number(name: &str) -> Option<u32> {
    let index = MONTHS.iter().position(|m| m.eq_ignore_ascii_case(name))?;
    u32::try_from(index + 1).ok()
}

/// Exactly two ASCII digits.
fn two_digits(text: &str) -> Option<u32> {
    (text.len() == 2).then(|| digits(text)).flatten()
}

/// Exactly four ASCII digits.
fn four_digits(text: &str) -> Option<u32> {
    (text.len() == 4).then(|| digits(text)).flatten()
}

/// One or more ASCII digits (at most four: callers check the exact count).
fn digits(text: &str) -> Option<u32> {
    let valid = !text.is_empty() && text.len() <= 4 && text.bytes().all(|b| b.is_ascii_digit());
    valid.then(|| text.parse().ok()).flatten()
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
    fn case_and_day_names_are_not_held_against_a_date() {
        for lenient in [
            "SUN, 06 NOV 1994 08:49:37 gmt",
            "Mon, 06 Nov 1994 08:49:37 GMT", // the wrong day: 6 Nov 1994 was a Sunday
            "sunday, 06-nov-94 08:49:37 Gmt",
            "Thu Nov  6 08:49:37 1994",
            "Sun, 06 Nov 1994 08:49:60 GMT", // a leap second, read as :59
        ] {
            let parsed = parse_http_date_in(lenient, 2025);
            let expected = at(EXAMPLE_SECS + i64::from(lenient.contains(":60")) * 22);
            assert_eq!(parsed, Some(expected), "{lenient:?}");
        }
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
            "Sun, 31 Nov 1994 08:49:37 GMT",    // no such day
            "Sun, 06 Nov 1994 24:49:37 GMT",    // no such hour
            "Sun, 06 Foo 1994 08:49:37 GMT",    // no such month
            "Sunday, 06-Nov-1994 08:49:37 GMT", // rfc850 needs 2 digits
            "Sunday, 06-Nov-9 08:49:37 GMT",    // one digit
            "Sunday, 06-Nov-9x 08:49:37 GMT",   // not a digit
            "Sun, 06  Nov 1994 08:49:37 GMT",   // two spaces
            "Sun, 6 Nov 1994 08:49:37 GMT",     // one-digit day
            "Sun, 06 Nov 1994 8:49:37 GMT",     // one-digit hour
            "Sun, 06 Nov 1994 08.49.37 GMT",    // periods
            "Sun 06 Nov 1994 08:49:37 GMT",     // no comma
            "Sun, 06-Nov-1994 08:49:37 GMT",    // dashes in IMF-fixdate
            "Sun, 06 Nov 94 08:49:37 GMT",      // two-digit year in IMF-fixdate
            "Sun, 06 Nov 1994 08:49:37 AEST",   // another zone
            "Sun Nov 6 08:49:37 1994",          // asctime pads with a space
            "Sun Nov   6 08:49:37 1994",        // too much padding
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
