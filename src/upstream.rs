//! Talking to a backend: open a connection with a connect timeout, and put read and write
//! timeouts on it so a silent backend can never hold a client thread forever.
//!
//! What is sent and how the answer is read is `proxy`'s sequence of steps; this module only
//! owns the socket. One connection carries one request (the request says
//! `Connection: close`).

use std::io::{self, BufReader};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use crate::config::Backend;

/// Read buffer for a backend's responses.
pub const UPSTREAM_BUFFER: usize = 64 * 1024;

/// An open connection to one backend.
pub struct Connection {
    /// Reads the backend's responses; `writer()` writes on the same socket.
    reader: BufReader<TcpStream>,
}

impl Connection {
    /// Connects to `backend`, trying each address its name resolves to within
    /// `connect_timeout`, then sets `io_timeout` on every read and write.
    ///
    /// # Errors
    /// The resolver's error, or the last connection error.
    pub fn open(
        backend: &Backend,
        connect_timeout: Duration,
        io_timeout: Duration,
    ) -> io::Result<Self> {
        let mut last = io::Error::new(io::ErrorKind::NotFound, "name resolved to no address");
        for addr in (backend.host.as_str(), backend.port).to_socket_addrs()? {
            match TcpStream::connect_timeout(&addr, connect_timeout) {
                Ok(stream) => {
                    stream.set_read_timeout(Some(io_timeout))?;
                    stream.set_write_timeout(Some(io_timeout))?;
                    stream.set_nodelay(true)?;
                    return Ok(Connection {
                        reader: BufReader::with_capacity(UPSTREAM_BUFFER, stream),
                    });
                }
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// The socket, for writing the request.
    pub fn writer(&self) -> &TcpStream {
        self.reader.get_ref()
    }

    /// The buffered reader, for reading the response.
    pub fn reader(&mut self) -> &mut BufReader<TcpStream> {
        &mut self.reader
    }
}
