//! Fuzz target: any bytes as a request. Nothing may panic, and an accepted request must
//! survive a serialize/parse round trip with no CR, LF or NUL in a field value.
#![no_main]

use std::io::Read;

use libfuzzer_sys::fuzz_target;
use relevo::http::body::{request_framing, BodyReader};
use relevo::http::parse::{read_request, Limits};
use relevo::http::serialize::write_request_head;

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    let mut reader = data;
    let Ok(Some(request)) = read_request(&mut reader, &limits) else {
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
