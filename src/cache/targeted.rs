//! The targeted cache-control fields (RFC 9213): `CDN-Cache-Control`, which every CDN-like
//! cache may follow, and `Relevo-Cache-Control`, which only Relevo follows, with the same
//! grammar. An origin uses them to give the proxy a policy other than the one browsers get
//! (`Cache-Control: no-store` for browsers, `CDN-Cache-Control: max-age=600` for us).
//!
//! A targeted field is a Structured Field Dictionary (RFC 8941 §3.2), parsed strictly: a
//! value that is not a valid dictionary is ignored whole, as if the field were absent (RFC
//! 9213 §2.1), and so is an empty one. Where the directives' types matter (RFC 9213 §2.1:
//! the directives keep their Cache-Control meaning), a number directive (`max-age`,
//! `s-maxage`, `stale-while-revalidate`, `stale-if-error`) must be a non-negative Integer,
//! else the whole field is invalid and ignored; a flag directive (`no-store`, `private`,
//! ...) is set by `?1` or a bare key, cleared by `?0`, and set by any other value (the
//! qualified `private="Set-Cookie"` form read as unqualified, as for Cache-Control).
//! Unknown directives are ignored. Choosing among the fields, and what a chosen field does
//! to Cache-Control and Expires, is `CacheControl::of_response`'s.
//!
//! Neither field is sent on to clients: the proxy removes both (`proxy::relay`).

use std::collections::HashSet;

use super::control::{CacheControl, MAX_DELTA_SECONDS};
use crate::http::Headers;

/// The targeted fields a shared cache reads, most specific first (RFC 9213 §2.2: a cache
/// follows the first of its target list that is present and valid), lower-cased.
pub const TARGETED_FIELDS: &[&str] = &["relevo-cache-control", "cdn-cache-control"];

/// Most digits in an Integer (RFC 8941 §3.3.1).
const MAX_INTEGER_DIGITS: usize = 15;
/// Most digits before the point in a Decimal (RFC 8941 §3.3.2).
const MAX_DECIMAL_INTEGER_DIGITS: usize = 12;
/// Most digits after the point in a Decimal (RFC 8941 §3.3.2).
const MAX_DECIMAL_FRACTION_DIGITS: usize = 3;

/// The directives of the targeted field `name` (lower-case), when it is present, valid and
/// not empty; its lines are one value joined by commas (RFC 8941 §4.2).
pub fn parse(headers: &Headers, name: &str) -> Option<CacheControl> {
    let lines: Vec<&str> = headers.get_all(name).collect();
    let members = dictionary(&lines.join(","))?;
    if members.is_empty() {
        return None;
    }
    let mut cc = CacheControl {
        targeted: true,
        ..CacheControl::default()
    };
    for (key, item) in &members {
        apply(&mut cc, key, *item)?;
    }
    Some(cc)
}

/// What the cache needs of a member's value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Item {
    Boolean(bool),
    Integer(i64),
    /// A Decimal, String, Token, Byte Sequence or Inner List.
    Other,
}

/// Sets the directive `key` from `item`; `None` when a number directive's value is not a
/// non-negative Integer (the field is then invalid).
fn apply(cc: &mut CacheControl, key: &str, item: Item) -> Option<()> {
    let seconds = || match item {
        Item::Integer(n) => u64::try_from(n).ok().map(|n| n.min(MAX_DELTA_SECONDS)),
        _ => None,
    };
    let flag = item != Item::Boolean(false);
    match key {
        "max-age" => cc.max_age = Some(seconds()?),
        "s-maxage" => cc.s_maxage = Some(seconds()?),
        "stale-while-revalidate" => cc.stale_while_revalidate = Some(seconds()?),
        "stale-if-error" => cc.stale_if_error = Some(seconds()?),
        "no-store" => cc.no_store = flag,
        "no-cache" => cc.no_cache = flag,
        "private" => cc.private = flag,
        "public" => cc.public = flag,
        "must-revalidate" => cc.must_revalidate = flag,
        "proxy-revalidate" => cc.proxy_revalidate = flag,
        "must-understand" => cc.must_understand = flag,
        _ => {}
    }
    Some(())
}

/// Parses a Dictionary (RFC 8941 §4.2.2); `None` when `text` is not one. A key given twice
/// keeps its last value.
///
/// ```text
/// sf-dictionary = dict-member *( OWS "," OWS dict-member )
/// dict-member   = member-key ( parameters / ( "=" member-value ))
/// member-value  = sf-item / inner-list
/// ```
fn dictionary(text: &str) -> Option<Vec<(String, Item)>> {
    let mut p = Parser {
        bytes: text.trim_matches(' ').as_bytes(),
        at: 0,
    };
    let mut members: Vec<(String, Item)> = Vec::new();
    while !p.done() {
        let key = p.key()?;
        let item = if p.eat(b'=') {
            p.member_value()?
        } else {
            p.parameters()?;
            Item::Boolean(true)
        };
        members.push((key, item));
        p.skip_ows();
        if p.done() {
            break;
        }
        if !p.eat(b',') {
            return None;
        }
        p.skip_ows();
        if p.done() {
            return None; // a trailing comma
        }
    }
    Some(last_of_each(members))
}

/// `members` with each key once, at its last value and in that value's place (RFC 8941
/// §4.2.2: a key seen again overwrites the earlier value). One pass, with a set of the
/// keys seen: the field is parsed on every cache hit, and a head may hold thousands of keys.
fn last_of_each(members: Vec<(String, Item)>) -> Vec<(String, Item)> {
    let mut seen = HashSet::new();
    let mut kept: Vec<(String, Item)> = members
        .into_iter()
        .rev()
        .filter(|(key, _)| seen.insert(key.clone()))
        .collect();
    kept.reverse();
    kept
}

/// A cursor over a field value.
struct Parser<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Parser<'_> {
    fn done(&self) -> bool {
        self.at >= self.bytes.len()
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    /// Consumes `byte` if it is next.
    fn eat(&mut self, byte: u8) -> bool {
        let next = self.peek() == Some(byte);
        self.at += usize::from(next);
        next
    }

    /// Consumes bytes while `keep` says so; returns how many.
    fn take_while(&mut self, keep: impl Fn(u8) -> bool) -> usize {
        let start = self.at;
        while self.peek().is_some_and(&keep) {
            self.at += 1;
        }
        self.at - start
    }

    fn skip_ows(&mut self) {
        self.take_while(|b| b == b' ' || b == b'\t');
    }

    /// `key = ( lcalpha / "*" ) *( lcalpha / DIGIT / "_" / "-" / "." / "*" )`
    fn key(&mut self) -> Option<String> {
        let start = self.at;
        if !self
            .peek()
            .is_some_and(|b| b.is_ascii_lowercase() || b == b'*')
        {
            return None;
        }
        self.take_while(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-' | b'.' | b'*')
        });
        Some(String::from_utf8_lossy(&self.bytes[start..self.at]).into_owned())
    }

    /// `member-value = sf-item / inner-list`
    fn member_value(&mut self) -> Option<Item> {
        if self.peek() == Some(b'(') {
            self.inner_list()?;
            return Some(Item::Other);
        }
        let item = self.bare_item()?;
        self.parameters()?;
        Some(item)
    }

    /// `inner-list = "(" *SP [ sf-item *( 1*SP sf-item ) *SP ] ")" parameters`
    fn inner_list(&mut self) -> Option<()> {
        self.eat(b'(');
        loop {
            self.take_while(|b| b == b' ');
            if self.eat(b')') {
                return self.parameters();
            }
            self.bare_item()?;
            self.parameters()?;
            if !matches!(self.peek(), Some(b' ' | b')')) {
                return None;
            }
        }
    }

    /// `parameters = *( ";" *SP parameter )`, `parameter = param-key [ "=" param-value ]`
    fn parameters(&mut self) -> Option<()> {
        while self.eat(b';') {
            self.take_while(|b| b == b' ');
            self.key()?;
            if self.eat(b'=') {
                self.bare_item()?;
            }
        }
        Some(())
    }

    /// `bare-item = sf-integer / sf-decimal / sf-string / sf-token / sf-binary / sf-boolean`
    fn bare_item(&mut self) -> Option<Item> {
        match self.peek()? {
            b'-' | b'0'..=b'9' => self.number(),
            b'"' => self.string().map(|()| Item::Other),
            b':' => self.binary().map(|()| Item::Other),
            b'?' => self.boolean(),
            b if b.is_ascii_alphabetic() || b == b'*' => {
                self.take_while(|b| crate::http::is_token(&[b]) || b == b':' || b == b'/');
                Some(Item::Other)
            }
            _ => None,
        }
    }

    /// `sf-integer = ["-"] 1*15DIGIT`; `sf-decimal = ["-"] 1*12DIGIT "." 1*3DIGIT`
    fn number(&mut self) -> Option<Item> {
        let negative = self.eat(b'-');
        let start = self.at;
        let whole = self.take_while(|b| b.is_ascii_digit());
        if whole == 0 {
            return None;
        }
        if self.eat(b'.') {
            let fraction = self.take_while(|b| b.is_ascii_digit());
            let valid = whole <= MAX_DECIMAL_INTEGER_DIGITS
                && (1..=MAX_DECIMAL_FRACTION_DIGITS).contains(&fraction);
            return valid.then_some(Item::Other);
        }
        if whole > MAX_INTEGER_DIGITS {
            return None;
        }
        let digits = std::str::from_utf8(&self.bytes[start..self.at]).ok()?;
        let n: i64 = digits.parse().ok()?;
        Some(Item::Integer(if negative { -n } else { n }))
    }

    /// `sf-string = DQUOTE *( unescaped / "%" / "\" ( DQUOTE / "\" ) ) DQUOTE`, printable
    /// ASCII only.
    fn string(&mut self) -> Option<()> {
        self.eat(b'"');
        loop {
            match self.peek()? {
                b'"' => {
                    self.at += 1;
                    return Some(());
                }
                b'\\' => {
                    self.at += 1;
                    if !matches!(self.peek()?, b'"' | b'\\') {
                        return None;
                    }
                    self.at += 1;
                }
                0x20..=0x7e => self.at += 1,
                _ => return None,
            }
        }
    }

    /// `sf-binary = ":" *(base64) ":"`
    fn binary(&mut self) -> Option<()> {
        self.eat(b':');
        self.take_while(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='));
        self.eat(b':').then_some(())
    }

    /// `sf-boolean = "?" ( "0" / "1" )`
    fn boolean(&mut self) -> Option<Item> {
        self.eat(b'?');
        let value = match self.peek()? {
            b'0' => false,
            b'1' => true,
            _ => return None,
        };
        self.at += 1;
        Some(Item::Boolean(value))
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::resp;
    use super::*;

    fn cdn(value: &str) -> Option<CacheControl> {
        let r = resp(200, &format!("CDN-Cache-Control: {value}\r\n"));
        parse(&r.headers, "cdn-cache-control")
    }

    #[test]
    fn directives_from_a_valid_dictionary() {
        let cc =
            cdn("max-age=3600, stale-if-error=60, foo;a=1, bar=(1 2);x, must-revalidate").unwrap();
        assert_eq!((cc.max_age, cc.stale_if_error), (Some(3600), Some(60)));
        assert!(cc.must_revalidate && cc.targeted);
        assert_eq!(
            cdn("max-age=99999999999").unwrap().max_age,
            Some(MAX_DELTA_SECONDS)
        );
        assert!(cdn("no-store").unwrap().no_store);
        assert!(!cdn("no-store=?0").unwrap().no_store);
        assert!(cdn("private=\"set-cookie\"").unwrap().private);
        assert_eq!(cdn("max-age=5, max-age=7").unwrap().max_age, Some(7));
        assert_eq!(
            cdn("foo").unwrap(),
            CacheControl {
                targeted: true,
                ..Default::default()
            }
        );
        let r = resp(
            200,
            "CDN-Cache-Control: max-age=5\r\nCDN-Cache-Control: private\r\n",
        );
        let joined = parse(&r.headers, "cdn-cache-control").unwrap();
        assert!(joined.private && joined.max_age == Some(5));
    }

    #[test]
    fn many_keys_cost_time_in_proportion() {
        // Parsed again on every cache hit: 50,000 distinct keys (a few times what a head
        // may hold) took tens of seconds when each new key was checked against every one
        // kept so far; a later value still replaces an earlier one.
        let keys: Vec<String> = (0..50_000).map(|i| format!("k{i}")).collect();
        let value = format!("max-age=1, {}, max-age=9", keys.join(", "));
        let mut headers = Headers::new();
        headers.append("CDN-Cache-Control", value);
        let started = std::time::Instant::now();
        let cc = parse(&headers, "cdn-cache-control").unwrap();
        assert_eq!(cc.max_age, Some(9));
        let took = started.elapsed();
        assert!(took < std::time::Duration::from_secs(2), "{took:?}");
        assert_eq!(cdn("max-age=x, max-age=3").unwrap().max_age, Some(3));
    }

    #[test]
    fn an_invalid_or_empty_field_is_ignored_whole() {
        for invalid in [
            "max-age=10000, &&&&&",
            "max-age=\"10000\"",
            "max-age=-1",
            "max-age=1.5",
            "max-age=1234567890123456",
            "MaX-aGe=3600",
            "max-age =100",
            "max-age= 100",
            "max-age=100,",
            "max-age=100 private",
            "a=\"unterminated",
            "a=:abc",
            "a=?2",
            "a=(1 2",
            "",
            "   ",
        ] {
            assert_eq!(cdn(invalid), None, "{invalid:?}");
        }
    }
}
