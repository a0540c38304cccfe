//! The entry file's format: a response's status line, its stored header fields and its
//! body, byte-exact; or, for a URI whose responses carry Vary, the variant index
//! (see the store's docs). Reading one back checks it: a head our parser accepts, and a body
//! exactly as long as its Content-Length says; anything else is a miss.

use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Cursor, Read, Seek, SeekFrom, Take};
use std::sync::Arc;
use std::time::SystemTime;

use super::is_entry_name;
use crate::http::body::{response_framing, Framing, COPY_BUFFER};
use crate::http::parse::{read_response, Limits, MAX_HEADERS, MAX_HEADER_BYTES, MAX_REQUEST_LINE};
use crate::http::{is_token, Response};

/// Largest variant index file read, in bytes.
pub(super) const MAX_INDEX_BYTES: u64 = 4 * 1024;

/// Start of a variant index file; a response file starts with `HTTP/`.
const INDEX_MAGIC: &[u8] = b"VARY ";

/// Hex digits in a variant index nonce.
pub(super) const NONCE_LEN: usize = 16;

/// Variant files a variant index names, for a purge to remove (each line takes 42 bytes,
/// and the index stays within `MAX_INDEX_BYTES`). Variants beyond are stored all the same;
/// a purge leaves them unreachable (their index is gone), and eviction removes them.
pub const MAX_LISTED_VARIANTS: usize = 64;

/// Limits for reading a stored head: those for a backend's head, plus room for the Date
/// and Content-Length fields we may have added.
const STORED_HEAD_LIMITS: Limits = Limits {
    max_line: MAX_REQUEST_LINE,
    max_header_bytes: MAX_HEADER_BYTES + 1024,
    max_headers: MAX_HEADERS + 8,
};

/// A stored response, opened: its head, and its body ready to be read.
#[derive(Debug)]
pub struct Entry {
    /// The stored head (status line and fields), as in the file.
    pub response: Response,
    /// Bytes of body in the file; equal to the stored Content-Length.
    pub body_len: u64,
    /// The file's mtime: when the response was received or last validated.
    pub stored_at: SystemTime,
    /// Invariant: positioned at the first body byte, limited to `body_len` bytes. The file
    /// is open (or the body in memory), so the body stays readable even if the entry is
    /// replaced or removed meanwhile.
    pub(super) body: EntryBody,
}

/// Where an entry's body is read from: its file, or memory (a small body remembered with its
/// head, see `memo`).
#[derive(Debug)]
pub(super) enum EntryBody {
    File(Take<BufReader<Counted<File>>>),
    Memory(Cursor<Arc<[u8]>>),
}

impl Read for EntryBody {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            EntryBody::File(file) => file.read(buf),
            EntryBody::Memory(bytes) => bytes.read(buf),
        }
    }
}

impl BufRead for EntryBody {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        match self {
            EntryBody::File(file) => file.fill_buf(),
            EntryBody::Memory(bytes) => bytes.fill_buf(),
        }
    }

    fn consume(&mut self, amt: usize) {
        match self {
            EntryBody::File(file) => file.consume(amt),
            EntryBody::Memory(bytes) => bytes.consume(amt),
        }
    }
}

impl EntryBody {
    /// See `Body::skip`.
    fn skip(&mut self, n: u64) -> io::Result<u64> {
        match self {
            EntryBody::File(body) => {
                let n = n.min(body.limit());
                let by = i64::try_from(n).map_err(|_| io::ErrorKind::InvalidInput)?;
                body.get_mut().seek_relative(by)?;
                body.set_limit(body.limit() - n);
                Ok(n)
            }
            EntryBody::Memory(bytes) => {
                let len = bytes.get_ref().len() as u64;
                let n = n.min(len.saturating_sub(bytes.position()));
                bytes.set_position(bytes.position() + n);
                Ok(n)
            }
        }
    }
}

impl Entry {
    /// The body: a reader of exactly `body_len` bytes (fewer only if the file is truncated
    /// behind our back), starting where the head ends.
    pub fn body(&mut self) -> &mut impl Read {
        &mut self.body
    }

    /// The stored head and the body reader, taken apart. The reader is buffered: a small
    /// body usually came in with the head, in the read that found the head.
    pub fn into_parts(self) -> (Response, Body) {
        (self.response, Body(self.body))
    }
}

/// An entry's body taken apart from its head: read it, or skip some of it first.
#[derive(Debug)]
pub struct Body(EntryBody);

impl Body {
    /// Skips the next `n` bytes of the body (at most what is left) without reading them: a
    /// range that starts deep in a large entry costs one `lseek`, not a read of every byte
    /// before it. Returns how many bytes were skipped.
    ///
    /// # Errors
    /// The file cannot be positioned.
    pub fn skip(&mut self, n: u64) -> io::Result<u64> {
        self.0.skip(n)
    }
}

impl Read for Body {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

impl BufRead for Body {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        self.0.fill_buf()
    }

    fn consume(&mut self, amt: usize) {
        self.0.consume(amt);
    }
}

/// What a file of the store holds.
pub(super) enum Stored {
    Entry(Entry),
    Index(VaryIndex),
}

/// The variant index of a URI whose responses carry Vary.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct VaryIndex {
    pub(super) nonce: String,
    pub(super) names: Vec<String>,
    /// The entry names of the variants stored under it, at most `MAX_LISTED_VARIANTS`.
    pub(super) variants: Vec<String>,
}

impl VaryIndex {
    /// `"VARY" SP nonce ":" SP name *( "," SP name ) CRLF *( entry-name CRLF )`
    pub(super) fn parse(text: &str) -> Option<VaryIndex> {
        let (first, rest) = text.split_once("\r\n")?;
        let line = first.strip_prefix("VARY ")?;
        let (nonce, names) = line.split_once(": ")?;
        let names: Vec<String> = names.split(", ").map(str::to_string).collect();
        let variants: Vec<String> = rest.split_terminator("\r\n").map(str::to_string).collect();
        let valid = nonce.len() == NONCE_LEN
            && nonce.bytes().all(|b| b.is_ascii_hexdigit())
            && names
                .iter()
                .all(|n| is_token(n.as_bytes()) && n.to_ascii_lowercase() == *n)
            && (rest.is_empty() || rest.ends_with("\r\n"))
            && variants.len() <= MAX_LISTED_VARIANTS
            && variants.iter().all(|v| is_entry_name(v));
        valid.then(|| VaryIndex {
            nonce: nonce.to_string(),
            names,
            variants,
        })
    }

    pub(super) fn to_bytes(&self) -> Vec<u8> {
        let mut text = format!("VARY {}: {}\r\n", self.nonce, self.names.join(", "));
        for variant in &self.variants {
            text.push_str(variant);
            text.push_str("\r\n");
        }
        text.into_bytes()
    }
}

/// Reads a store file: a variant index, or a response head whose body length matches its
/// Content-Length (a 204: no body at all).
pub(super) fn parse_file(file: File, meta: &fs::Metadata) -> Result<Stored, String> {
    let stored_at = meta.modified().map_err(|e| e.to_string())?;
    // A buffer the size of the file, up to COPY_BUFFER: a small entry is read in one go,
    // and a large body is copied in large reads.
    let capacity = usize::try_from(meta.len()).map_or(COPY_BUFFER, |len| len.clamp(1, COPY_BUFFER));
    let counted = Counted {
        inner: file,
        count: 0,
    };
    let mut reader = BufReader::with_capacity(capacity, counted);
    let start = reader.fill_buf().map_err(|e| e.to_string())?;
    if start.starts_with(INDEX_MAGIC) {
        let mut text = String::new();
        reader
            .take(MAX_INDEX_BYTES)
            .read_to_string(&mut text)
            .map_err(|e| e.to_string())?;
        return VaryIndex::parse(&text)
            .map(Stored::Index)
            .ok_or_else(|| "malformed variant index".to_string());
    }
    let response = read_response(&mut reader, &STORED_HEAD_LIMITS)
        .map_err(|e| format!("malformed head: {e}"))?;
    if response.is_interim() || response.status == 304 {
        return Err(format!("status {} is never stored", response.status));
    }
    let head_len = reader.get_ref().count - reader.buffer().len() as u64;
    let body_len = meta.len().saturating_sub(head_len);
    let expected = match response_framing("GET", &response) {
        Ok(Framing::Length(n)) => n,
        Ok(Framing::Empty) => 0,
        _ => return Err("no valid Content-Length".to_string()),
    };
    if expected != body_len {
        return Err(format!(
            "{body_len} body bytes where Content-Length says {expected}"
        ));
    }
    Ok(Stored::Entry(Entry {
        response,
        body_len,
        stored_at,
        body: EntryBody::File(reader.take(body_len)),
    }))
}

/// A reader that counts the bytes it has read: where the file stands, without asking the
/// kernel (`lseek`) on every cache hit.
#[derive(Debug)]
pub(super) struct Counted<R> {
    pub(super) inner: R,
    pub(super) count: u64,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count += n as u64;
        Ok(n)
    }
}

impl<R: Seek> Seek for Counted<R> {
    /// Moves in the file; `count` follows, so it stays where the file stands.
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let at = self.inner.seek(to)?;
        self.count = at;
        Ok(at)
    }
}
