//! Fuzz target: any bytes as a request (the first byte sets the read size). Nothing may panic,
//! splitting the input across reads changes nothing, and an accepted request must
//! survive a serialize/parse round trip with no CR, LF or NUL in a field value.
#![no_main]

use std::io::{BufReader, Read};

use libfuzzer_sys::fuzz_target;
use relevo::http::body::{request_framing, BodyReader};
use relevo::http::parse::{read_request, Limits};
use relevo::http::serialize::write_request_head;

fuzz_target!(|data: &[u8]| {
    let Some((&step, data)) = data.split_first() else {
        return;
    };
    let limits = Limits::default();
    // The same bytes arriving a few at a time parse the same way: lines whole in the buffer
    // are parsed in place, lines split across reads are gathered first.
    let mut trickle = BufReader::with_capacity(usize::from(step) + 1, data);
    let split = format!("{:?}", read_request(&mut trickle, &limits));
    let mut reader = data;
    let whole = read_request(&mut reader, &limits);
    assert_eq!(split, format!("{whole:?}"));
    let Ok(Some(request)) = whole else {
        return;
    };
    for (_, value) in request.headers.iter() {
        assert!(!value.contains(['\r', '\n', '\0']));
    }
    let mut wire = Vec::new();
    write_request_head(&mut wire, &request).unwrap();
    let again = read_request(&mut &wire[..], &limits).unwrap().unwrap();
    assert_eq!(again, request);
    if let Ok(framing) = request_framing(&request) {
        let mut body = Vec::new();
        let _ = BodyReader::new(&mut reader, framing).read_to_end(&mut body);
    }
});
