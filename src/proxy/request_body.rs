//! Step 3 of the proxy: the request body, read before any backend is contacted when it is
//! small (at most `REQUEST_BUFFER` bytes), so that a body that is malformed, too large or
//! cut short is refused before a backend sees any of it (as nginx does by buffering), and so
//! that it can be sent again to another backend. A larger body is read as far as
//! `REQUEST_BUFFER` here and streamed on to the backend by `forward`.

use std::io::{BufReader, Read, Write};

use crate::error::{Error, Result, Side};
use crate::http::body::{copy_body, BodyProgress, BodyReader, Framing};
use crate::http::{Request, Version};
use crate::server::ClientStream;

/// Request bodies up to this size are read whole before a backend is contacted; larger
/// ones are streamed. Bytes.
pub const REQUEST_BUFFER: usize = 64 * 1024;

/// A request body as far as it was read before any backend was contacted.
pub(super) struct RequestBody {
    /// The framing the client used.
    pub(super) framing: Framing,
    /// The body, or its first `REQUEST_BUFFER` bytes.
    pub(super) start: Vec<u8>,
    /// Where reading stopped when the body is bigger than `start`; None when `start` is all
    /// of it.
    pub(super) rest: Option<BodyProgress>,
}

impl RequestBody {
    /// Whether the whole body is in memory (and so can be sent again).
    pub(super) fn is_complete(&self) -> bool {
        self.rest.is_none()
    }

    /// How the backend gets it: a body read whole goes with our own Content-Length, a
    /// streamed one with the framing it came with (re-encoded by us).
    pub(super) fn outgoing_framing(&self) -> Framing {
        match (self.framing, &self.rest) {
            (Framing::Empty, _) => Framing::Empty,
            (_, None) => Framing::Length(self.start.len() as u64),
            (framing, Some(_)) => framing,
        }
    }
}

/// Step 3: read the request body, or its first `REQUEST_BUFFER` bytes, before any backend
/// is contacted. A small body that is malformed, too large or cut short is refused before a
/// backend sees any of it (as nginx does by buffering), and a small body can be replayed on
/// another backend. `Expect: 100-continue` is answered here, since we are about to read.
pub(super) fn read(
    client: &mut BufReader<ClientStream>,
    request: &Request,
    framing: Framing,
    max_body: u64,
) -> Result<RequestBody> {
    let mut body = RequestBody {
        framing,
        start: Vec::new(),
        rest: None,
    };
    if framing == Framing::Empty {
        return Ok(body);
    }
    if expects_continue(request) {
        // RFC 9110 §10.1.1: we answer the expectation ourselves and do not forward Expect.
        client
            .get_ref()
            .tcp()
            .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
            .map_err(|e| Error::Io(Side::Client, e))?;
    }
    let mut reader = BodyReader::new(&mut *client, framing);
    let mut limited = (&mut reader).take(REQUEST_BUFFER as u64 + 1);
    copy_body(
        &mut limited,
        &mut body.start,
        Side::Client,
        Side::Client,
        max_body,
    )?;
    if !reader.is_done() {
        body.rest = Some(reader.progress());
    }
    Ok(body)
}

fn expects_continue(request: &Request) -> bool {
    request.version == Version::Http11 && request.headers.has_token("expect", "100-continue")
}
