//! Percent-decoding (RFC 3986 §2.1), for the two programs that turn a URI path back into
//! bytes: the web server, to find the file a request-target names, and the client, to name
//! the file it saves a download to; and for the proxy's admin forms, whose fields it decodes
//! strictly (after turning `+` into a space, the one rule forms add).
//!
//! ```text
//! pct-encoded = "%" HEXDIG HEXDIG          ; RFC 3986 §2.1, either case
//! ```
//!
//! The two differ only on a `%` that is not followed by two hex digits, and they must:
//! the web server acts on what it decodes (which file to open), so a target it cannot decode
//! exactly is refused (400) rather than guessed at; the client only needs a file name from
//! whatever URL the user typed, so it keeps a stray `%` as it is, as browsers do (the WHATWG
//! URL Standard's percent-decode). Neither looks at what a byte decodes to: refusing `/`,
//! NUL or `..` is the caller's business.
//!
//! Percent-*encoding* a URL is the client's (`client::url`); encoding a form field's value,
//! for `proxy --purge`, is [`form_encode`]. Nothing here opens a socket.

/// `value` as a field value of an `application/x-www-form-urlencoded` body: every byte but
/// ASCII letters, digits and `*-._` as `%XX` (the URL Standard's form encoding, with a space
/// as `%20` rather than `+`, which decoders read alike).
pub fn form_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"*-._".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `input` with every `%XX` replaced by the byte it spells; `None` when a `%` is not
/// followed by two hex digits (`%`, `%4`, `%zz`).
///
/// # Security
/// Decoded bytes may be anything, `/` and NUL included: a caller that maps the result to a
/// path must check the bytes after decoding, never before.
pub fn percent_decode(input: &[u8]) -> Option<Vec<u8>> {
    decode(input, Stray::Refuse)
}

/// `input` with every `%XX` replaced by the byte it spells; a `%` not followed by two hex
/// digits is kept as it is (`100%` stays `100%`).
pub fn percent_decode_lenient(input: &[u8]) -> Vec<u8> {
    decode(input, Stray::Keep).expect("a decoder that keeps stray escapes never refuses")
}

/// What to do with a `%` that is not followed by two hex digits.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Stray {
    /// The whole input is refused.
    Refuse,
    /// The `%` is kept as an ordinary byte.
    Keep,
}

fn decode(input: &[u8], stray: Stray) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while let Some(&b) = input.get(i) {
        if b == b'%' {
            match escaped_byte(input.get(i + 1..i + 3)) {
                Some(byte) => {
                    out.push(byte);
                    i += 3;
                    continue;
                }
                None if stray == Stray::Refuse => return None,
                None => {}
            }
        }
        out.push(b);
        i += 1;
    }
    Some(out)
}

/// The byte two hex digits spell, `None` unless `digits` is exactly two hex digits.
fn escaped_byte(digits: Option<&[u8]>) -> Option<u8> {
    let [hi, lo] = digits? else {
        return None;
    };
    Some((hex_value(*hi)? << 4) | hex_value(*lo)?)
}

/// The value of one hexadecimal digit, `None` if `b` is not one.
fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_encoding_round_trips_through_the_decoder() {
        let url = "http://h:80/a b/ü?x=1&y=%2F+";
        let encoded = form_encode(url);
        assert_eq!(
            encoded,
            "http%3A%2F%2Fh%3A80%2Fa%20b%2F%C3%BC%3Fx%3D1%26y%3D%252F%2B"
        );
        assert_eq!(percent_decode(encoded.as_bytes()).unwrap(), url.as_bytes());
    }

    #[test]
    fn escapes_decode_in_either_case_and_other_bytes_pass() {
        for decode in [percent_decode, |b: &[u8]| Some(percent_decode_lenient(b))] {
            assert_eq!(decode(b"a%20b").unwrap(), b"a b");
            assert_eq!(decode(b"%2e%2E%2f%5C").unwrap(), b"../\\");
            assert_eq!(decode(b"%00%ff%FF").unwrap(), b"\0\xff\xff");
            assert_eq!(decode(b"caf\xc3\xa9+x").unwrap(), b"caf\xc3\xa9+x");
            assert_eq!(decode(b"%2541").unwrap(), b"%41", "decoded once, not twice");
            assert_eq!(decode(b"").unwrap(), b"");
        }
    }

    #[test]
    fn a_stray_percent_refuses_the_strict_decoding() {
        for bad in [
            &b"%"[..],
            b"%4",
            b"a%2",
            b"%zz",
            b"%4g",
            b"%+f",
            b"%-1",
            b"% 1",
            b"ok%",
        ] {
            assert_eq!(percent_decode(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_stray_percent_is_kept_by_the_lenient_decoding() {
        assert_eq!(percent_decode_lenient(b"100%"), b"100%");
        assert_eq!(percent_decode_lenient(b"%4"), b"%4");
        assert_eq!(percent_decode_lenient(b"%zz%41"), b"%zzA");
        assert_eq!(percent_decode_lenient(b"%+f"), b"%+f");
        assert_eq!(percent_decode_lenient(b"%%41"), b"%A");
    }
}
