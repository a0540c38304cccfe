//! Fuzz target: any bytes as a backend's response. Nothing may panic, and an accepted head
//! must survive a serialize/parse round trip.
#![no_main]

use std::io::Read;

use libfuzzer_sys::fuzz_target;
use relevo::http::body::{response_framing, BodyReader};
use relevo::http::parse::{read_response, Limits};
use relevo::http::serialize::response_head_bytes;

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    let mut reader = data;
    let Ok(response) = read_response(&mut reader, &limits) else {
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
