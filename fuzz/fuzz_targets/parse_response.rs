//! Fuzz target: any bytes as a backend's response (the first byte sets the read size).
//! Nothing may panic, splitting the input across reads changes nothing, and an accepted head
//! must survive a serialize/parse round trip.
#![no_main]

use std::io::{BufReader, Read};

use libfuzzer_sys::fuzz_target;
use relevo::http::body::{response_framing, BodyReader};
use relevo::http::parse::{read_response, Limits};
use relevo::http::serialize::response_head_bytes;

fuzz_target!(|data: &[u8]| {
    let Some((&step, data)) = data.split_first() else {
        return;
    };
    let limits = Limits::default();
    // The same bytes arriving a few at a time parse the same way: lines whole in the buffer
    // are parsed in place, lines split across reads are gathered first.
    let mut trickle = BufReader::with_capacity(usize::from(step) + 1, data);
    let split = format!("{:?}", read_response(&mut trickle, &limits));
    let mut reader = data;
    let whole = read_response(&mut reader, &limits);
    assert_eq!(split, format!("{whole:?}"));
    let Ok(response) = whole else {
        return;
    };
    let wire = response_head_bytes(&response);
    let mut again = read_response(&mut &wire[..], &limits).unwrap();
    again.version = response.version;
    assert_eq!(again, response);
    if let Ok(framing) = response_framing("GET", &response) {
        let mut body = Vec::new();
        let _ = BodyReader::new(&mut reader, framing).read_to_end(&mut body);
    }
});
