//! Randomized parser test: mutated requests and responses, from a seeded generator, through
//! the head parser and the body reader. Nothing may panic or hang, and whatever the parser
//! accepts must survive a serialize/parse round trip unchanged, with every field value still
//! free of CR, LF and NUL (RFC 9110 §5.5), so the proxy can never forward something a
//! backend would split differently.
//!
//! The same seed gives the same inputs on every run; a failure prints the seed and the input.
//! For longer, coverage-guided runs there is a cargo-fuzz target in fuzz/ (see README).

use std::io::{BufReader, Read};

use relevo::http::body::{request_framing, response_framing, BodyReader};
use relevo::http::parse::{read_request, read_response, Limits};
use relevo::http::serialize::{response_head_bytes, write_request_head};

/// How many mutated inputs of each kind (requests, responses) one run feeds the parser.
const CASES: usize = 100_000;
/// Fixed seed: the run is reproducible.
const SEED: u64 = 0x5EED_F00D_2E1E_0001;

/// xorshift64*: small, fast and good enough to shuffle bytes.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

const REQUESTS: &[&[u8]] = &[
    b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n",
    b"GET /a/b?c=d&e HTTP/1.1\r\nHost: h:8080\r\nAccept: */*\r\nConnection: keep-alive\r\n\r\n",
    b"POST /form HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello",
    b"POST /up HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n3;x=y\r\nabc\r\n0\r\nT: v\r\n\r\n",
    b"HEAD http://h/x HTTP/1.0\r\nUser-Agent: t\r\n\r\n",
    b"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n",
    b"PUT /f HTTP/1.1\r\nHost: h\r\nContent-Length: 3, 3\r\nExpect: 100-continue\r\n\r\nabc",
];

const RESPONSES: &[&[u8]] = &[
    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    b"HTTP/1.0 404 Not Found\r\nContent-Type: text/plain\r\n\r\nmissing",
    b"HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\n",
    b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\n",
    b"HTTP/1.1 204 No Content\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n\r\n",
];

/// Bytes that sit on the boundaries parsers argue about.
const INTERESTING: &[u8] = b"\r\n\0 \t:;,=\"/\\%0123456789abcdefABCDEF\x7f\x80\xff-";
const WORDS: &[&[u8]] = &[
    b"\r\n",
    b"\r\n\r\n",
    b"\n",
    b"\r",
    b"chunked",
    b"Transfer-Encoding: chunked\r\n",
    b"Content-Length: 0\r\n",
    b"Content-Length: 18446744073709551616\r\n",
    b" HTTP/1.1",
    b"HTTP/1.0",
    b"Host: x\r\n",
    b"ffffffffffffffff",
    b"0\r\n\r\n",
    b" \r\n",
    b":",
];

fn mutate(rng: &mut Rng, input: &[u8], corpus: &[&[u8]]) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..=rng.below(4) {
        let at = rng.below(out.len() + 1);
        match rng.below(8) {
            0 if !out.is_empty() => {
                let i = rng.below(out.len());
                out[i] ^= 1 << rng.below(8);
            }
            1 => out.insert(at, *rng.pick(INTERESTING)),
            2 if at < out.len() => {
                let end = (at + 1 + rng.below(8)).min(out.len());
                out.drain(at..end);
            }
            3 => {
                let word = *rng.pick(WORDS);
                out.splice(at..at, word.iter().copied());
            }
            4 if at < out.len() => {
                let end = (at + 1 + rng.below(16)).min(out.len());
                let copy = out[at..end].to_vec();
                out.splice(at..at, copy);
            }
            5 => out.truncate(at),
            6 => {
                let other = *rng.pick(corpus);
                let from = rng.below(other.len());
                out.splice(at..at, other[from..].iter().copied());
            }
            _ if at < out.len() => out[at] = *rng.pick(INTERESTING),
            _ => {}
        }
    }
    out
}

/// A body limit well above anything the inputs can hold.
const BODY_LIMIT: usize = 1 << 20;

fn check_request(input: &[u8], capacity: usize) {
    let limits = Limits::default();
    let mut reader = BufReader::with_capacity(capacity, input);
    let Ok(Some(request)) = read_request(&mut reader, &limits) else {
        return;
    };
    for (name, value) in request.headers.iter() {
        assert!(
            !value.contains(['\r', '\n', '\0']) && !name.is_empty(),
            "accepted a dangerous field {name:?}: {value:?}"
        );
    }
    let mut wire = Vec::new();
    write_request_head(&mut wire, &request).unwrap();
    let again = read_request(&mut &wire[..], &limits)
        .expect("our own serialization must parse")
        .expect("and not be empty");
    assert_eq!(again, request, "round trip changed the request");
    if let Ok(framing) = request_framing(&request) {
        let mut body = Vec::new();
        let _ = BodyReader::new(&mut reader, framing)
            .take(BODY_LIMIT as u64)
            .read_to_end(&mut body);
    }
}

fn check_response(input: &[u8], capacity: usize) {
    let limits = Limits::default();
    let mut reader = BufReader::with_capacity(capacity, input);
    let Ok(response) = read_response(&mut reader, &limits) else {
        return;
    };
    let wire = response_head_bytes(&response);
    let mut again =
        read_response(&mut &wire[..], &limits).expect("our own serialization must parse");
    // We always write HTTP/1.1 or HTTP/1.0 exactly as parsed; nothing else may change.
    again.version = response.version;
    assert_eq!(again, response, "round trip changed the response");
    let mut body = Vec::new();
    if let Ok(framing) = response_framing("GET", &response) {
        let _ = BodyReader::new(&mut reader, framing)
            .take(BODY_LIMIT as u64)
            .read_to_end(&mut body);
    }
}

fn run(kind: &str, corpus: &[&[u8]], check: fn(&[u8], usize)) {
    let mut rng = Rng(SEED ^ kind.len() as u64);
    for case in 0..CASES {
        let seed_input = rng_pick(&mut rng, corpus);
        let input = mutate(&mut rng, seed_input, corpus);
        // Tiny buffers make every line and chunk straddle reads.
        let capacity = *rng.pick(&[1usize, 2, 3, 7, 64, 8192]);
        let outcome = std::panic::catch_unwind(|| check(&input, capacity));
        if let Err(panic) = outcome {
            panic!(
                "{kind} case {case} (seed {SEED:#x}, buffer {capacity}) failed on {:?}: {:?}",
                String::from_utf8_lossy(&input),
                panic
                    .downcast_ref::<String>()
                    .map(String::as_str)
                    .unwrap_or("panic")
            );
        }
    }
}

fn rng_pick<'a>(rng: &mut Rng, corpus: &[&'a [u8]]) -> &'a [u8] {
    corpus[rng.below(corpus.len())]
}

#[test]
fn a_hundred_thousand_mutated_requests_never_panic_and_round_trip() {
    run("request", REQUESTS, check_request);
}

#[test]
fn a_hundred_thousand_mutated_responses_never_panic_and_round_trip() {
    run("response", RESPONSES, check_response);
}

#[test]
fn the_generator_really_produces_accepted_and_rejected_inputs() {
    // Guards against a generator that only ever makes garbage (or never mutates).
    let mut rng = Rng(SEED);
    let (mut accepted, mut rejected) = (0, 0);
    for _ in 0..2_000 {
        let seed_input = rng_pick(&mut rng, REQUESTS);
        let input = mutate(&mut rng, seed_input, REQUESTS);
        match read_request(&mut &input[..], &Limits::default()) {
            Ok(Some(_)) => accepted += 1,
            _ => rejected += 1,
        }
    }
    assert!(
        accepted > 200 && rejected > 200,
        "accepted {accepted}, rejected {rejected}"
    );
}
