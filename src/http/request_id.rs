//! Request ids: the `X-Request-Id` field, one name per request, so that a request can be
//! followed from the client through the proxy's logs to the backend's log and back in the
//! response. Shared by the proxy (which decides a request's id and forwards it) and the web
//! server (which logs the id it receives).
//!
//! The field is a convention (Heroku's router, nginx's `$request_id`, most tracing set-ups),
//! not an RFC. Its value here is 1 to [`MAX_REQUEST_ID`] tchar (RFC 9110 §5.6.2), so it can
//! go into a log line, a header and a JSON string without escaping:
//!
//! ```text
//! request-id = 1*64tchar
//! tchar      = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "." /
//!              "^" / "_" / "`" / "|" / "~" / DIGIT / ALPHA
//! ```
//!
//! A client's valid id is kept; anything else (too long, a space, a quote, a comma, two
//! fields) is replaced with a fresh one: 16 lowercase hex digits. A fresh id is a
//! process-wide counter, offset by a key drawn once per process (std's `RandomState`, seeded
//! by the operating system, hashing the start time and the process id), and passed through
//! a bijective mix: two ids of one process never repeat (the mix is a permutation of `u64`
//! and the counter would take centuries to wrap), and two processes' ids are unrelated.

use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use super::{is_token, Request};

/// The field that carries the id, in requests and responses.
pub const REQUEST_ID_FIELD: &str = "X-Request-Id";
/// Longest id accepted from a client, in bytes (all ASCII).
pub const MAX_REQUEST_ID: usize = 64;
/// Hex digits in an id we make (64 bits).
const FRESH_DIGITS: usize = 16;

/// One request's id: 1 to [`MAX_REQUEST_ID`] tchar, or empty before one is decided
/// (`Default`). `Copy`, and kept inline, so it costs no allocation.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct RequestId {
    /// Invariant: `bytes[..len]` are tchar (ASCII), and `len <= MAX_REQUEST_ID`.
    bytes: [u8; MAX_REQUEST_ID],
    len: u8,
}

impl Default for RequestId {
    fn default() -> Self {
        RequestId {
            bytes: [0; MAX_REQUEST_ID],
            len: 0,
        }
    }
}

impl RequestId {
    /// `value` as an id, if it is a valid one (see the module docs).
    pub fn parse(value: &str) -> Option<Self> {
        let bytes = value.as_bytes();
        if bytes.len() > MAX_REQUEST_ID || !is_token(bytes) {
            return None;
        }
        let mut id = RequestId::default();
        id.bytes[..bytes.len()].copy_from_slice(bytes);
        id.len = u8::try_from(bytes.len()).expect("at most MAX_REQUEST_ID, below 256");
        Some(id)
    }

    /// The id `request` brings: its one `X-Request-Id` field, when that is valid. None
    /// without the field, with an invalid value, or with two fields (which one would be
    /// meant?).
    pub fn of(request: &Request) -> Option<Self> {
        let mut fields = request.headers.get_all(REQUEST_ID_FIELD);
        let first = fields.next()?;
        if fields.next().is_some() {
            return None;
        }
        RequestId::parse(first)
    }

    /// The id for `request`: the client's own when it sent a valid one, else a fresh one.
    pub fn decide(request: &Request) -> Self {
        RequestId::of(request).unwrap_or_else(RequestId::fresh)
    }

    /// A new id, unique in this process: 16 lowercase hex digits.
    pub fn fresh() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        static KEY: OnceLock<u64> = OnceLock::new();
        let key = *KEY.get_or_init(|| {
            let started = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            RandomState::new().hash_one((started, std::process::id()))
        });
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        RequestId::from_u64(mix(n.wrapping_add(key)))
    }

    /// `value` as 16 lowercase hex digits.
    fn from_u64(value: u64) -> Self {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut id = RequestId::default();
        for (i, byte) in id.bytes[..FRESH_DIGITS].iter_mut().enumerate() {
            let shift = 4 * (FRESH_DIGITS - 1 - i);
            *byte = HEX[((value >> shift) & 0xf) as usize];
        }
        id.len = FRESH_DIGITS as u8;
        id
    }

    /// The id as text (empty before one is decided).
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.bytes[..usize::from(self.len)])
            .expect("an id holds ASCII tchar only")
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RequestId({:?})", self.as_str())
    }
}

/// The finaliser of SplitMix64: a permutation of `u64` (an xor with a right shift and a
/// multiplication by an odd constant can each be undone), so distinct counters give
/// distinct ids, which look unrelated to one another.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    fn request_with(ids: &[&str]) -> Request {
        let mut request = Request::new("GET", "/");
        for id in ids {
            request.headers.append("x-request-id", id);
        }
        request
    }

    #[test]
    fn a_valid_client_id_is_kept_as_sent() {
        let longest = "x".repeat(MAX_REQUEST_ID);
        for id in [
            "abc",
            "0123-4567_89.AB~",
            "a!#$%&'*+-.^_`|~z",
            longest.as_str(),
        ] {
            assert_eq!(RequestId::parse(id).map(|i| i.to_string()), Some(id.into()));
            assert_eq!(RequestId::decide(&request_with(&[id])).as_str(), id);
        }
    }

    #[test]
    fn an_invalid_client_id_is_replaced() {
        let too_long = "x".repeat(MAX_REQUEST_ID + 1);
        for bad in [
            "",
            "a b",
            "a\"b",
            "a,b",
            "a/b",
            "caf\u{e9}",
            "a\tb",
            too_long.as_str(),
        ] {
            assert_eq!(RequestId::parse(bad), None, "{bad:?}");
            let decided = RequestId::decide(&request_with(&[bad]));
            assert_ne!(decided.as_str(), bad);
            assert_eq!(decided.as_str().len(), 16);
        }
        assert_eq!(
            RequestId::of(&request_with(&["a", "b"])),
            None,
            "two fields"
        );
        assert_eq!(RequestId::of(&request_with(&[])), None);
    }

    #[test]
    fn fresh_ids_are_sixteen_hex_digits_and_never_repeat() {
        let ids: HashSet<String> = (0..10_000)
            .map(|_| RequestId::fresh().to_string())
            .collect();
        assert_eq!(ids.len(), 10_000);
        for id in ids.iter().take(100) {
            assert!(
                id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit()),
                "{id}"
            );
            assert_eq!(id.to_ascii_lowercase(), *id);
        }
    }

    #[test]
    fn fresh_ids_from_many_threads_never_repeat() {
        let threads: Vec<_> = (0..4)
            .map(|_| std::thread::spawn(|| (0..2_000).map(|_| RequestId::fresh()).collect()))
            .collect();
        let mut all = HashSet::new();
        for t in threads {
            let ids: Vec<RequestId> = t.join().unwrap();
            for id in ids {
                assert!(all.insert(id.to_string()), "{id} twice");
            }
        }
    }

    #[test]
    fn the_mix_is_a_permutation_on_a_sample_and_spreads_neighbours() {
        let outputs: HashSet<u64> = (0..100_000u64).map(mix).collect();
        assert_eq!(outputs.len(), 100_000);
        // Neighbouring counters differ in about half of their 64 bits once mixed.
        let flipped = (mix(41) ^ mix(42)).count_ones();
        assert!((16..=48).contains(&flipped), "{flipped}");
    }

    #[test]
    fn the_default_is_empty_until_decided() {
        assert_eq!(RequestId::default().as_str(), "");
    }
}
