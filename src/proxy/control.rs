//! `proxy --reload`, `proxy --stop` and `proxy --purge URL`: the command line's side of the
//! admin endpoint. They read the same proxy.conf as the proxy they control, to find it: a
//! `POST {status_path}/reload`, `/stop` or `/purge` goes to its `listen` address (through
//! loopback when it listens on every address), with `Accept: text/plain`, and what the
//! proxy answers is printed. `status_allow` must let the address we come from in (loopback,
//! by default). `--purge` posts `url=URL`, or `path=PATH` when it is given a path (starting
//! with `/`: that path on every host).
//!
//! `--stop` then waits for the proxy's process to end (its id comes in the answer's
//! `Relevo-Pid`; it is looked for in `/proc`), at most `shutdown_timeout` and
//! `STOP_MARGIN` more, and says whether it did.

use std::io::{BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, ToSocketAddrs};
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use super::admin::PID_HEADER;
use super::config::Config;
use crate::http::body::{response_framing, BodyReader};
use crate::http::parse::{read_final_response, Limits};
use crate::http::percent::form_encode;
use crate::http::{serialize, Request};

/// How long connecting to the proxy may take.
pub const CONTROL_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long each read and write to the proxy may wait: a reload checks that the backends'
/// names resolve, which a slow resolver can make take a while.
pub const CONTROL_IO_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest answer read from the proxy (bytes): a reload's list of mistakes is a few lines.
pub const MAX_ANSWER: u64 = 64 * 1024;
/// How long `--stop` waits beyond `shutdown_timeout` for the process to end.
pub const STOP_MARGIN: Duration = Duration::from_secs(5);
/// How often `--stop` looks whether the process has ended.
const STOP_POLL: Duration = Duration::from_millis(50);

/// What to ask the running proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ask {
    /// Read proxy.conf again.
    Reload,
    /// Stop gracefully, and wait until it has.
    Stop,
    /// Remove what the cache stores for this URL, or for this path (starting with `/`) on
    /// every host.
    Purge(String),
}

impl Ask {
    /// The admin action, and the form it posts.
    fn action_and_form(&self) -> (&'static str, String) {
        match self {
            Ask::Reload => ("reload", String::new()),
            Ask::Stop => ("stop", String::new()),
            Ask::Purge(what) if what.starts_with('/') => {
                ("purge", format!("path={}", form_encode(what)))
            }
            Ask::Purge(url) => ("purge", format!("url={}", form_encode(url))),
        }
    }
}

/// Asks the proxy that `config` describes to reload, stop or purge: what it answered (and,
/// for a stop, that it has gone), or what went wrong.
///
/// # Errors
/// A message when the proxy cannot be reached, refuses (its answer, such as a reload's
/// list of mistakes), or, for a stop, is still running after the wait.
pub fn ask(config: &Config, what: &Ask) -> Result<String, String> {
    let (action, form) = what.action_and_form();
    let Some(status_path) = &config.status_path else {
        return Err(format!(
            "{}: status_path is off: --{action} asks the proxy through {{status_path}}/{action}",
            config.sources.file()
        ));
    };
    let addr = control_address(&config.listen)?;
    let mut stream = TcpStream::connect_timeout(&addr, CONTROL_CONNECT_TIMEOUT)
        .map_err(|e| format!("no proxy answers at {addr} ({e}): is it running?"))?;
    let unreachable = |e: std::io::Error| format!("talking to the proxy at {addr}: {e}");
    stream
        .set_read_timeout(Some(CONTROL_IO_TIMEOUT))
        .and_then(|()| stream.set_write_timeout(Some(CONTROL_IO_TIMEOUT)))
        .map_err(unreachable)?;
    let mut request = Request::new("POST", &format!("{status_path}/{action}"));
    request.headers.append("Host", addr.to_string());
    request.headers.append("Accept", "text/plain");
    if !form.is_empty() {
        let form_type = "application/x-www-form-urlencoded";
        request.headers.append("Content-Type", form_type);
    }
    request
        .headers
        .append("Content-Length", form.len().to_string());
    request.headers.append("Connection", "close");
    serialize::write_request_head(&mut stream, &request)
        .and_then(|()| stream.write_all(form.as_bytes()))
        .and_then(|()| stream.flush())
        .map_err(unreachable)?;
    let mut reader = BufReader::new(stream);
    let response = read_final_response(&mut reader, &Limits::default(), |_| Ok(()))
        .map_err(|e| format!("the proxy at {addr} answered badly: {e}"))?;
    let framing = response_framing("POST", &response)
        .map_err(|e| format!("the proxy at {addr} answered badly: {e}"))?;
    let mut text = String::new();
    BodyReader::new(reader, framing)
        .take(MAX_ANSWER)
        .read_to_string(&mut text)
        .map_err(unreachable)?;
    let text = text.trim_end().to_string();
    if response.status != 200 {
        return Err(format!("the proxy at {addr} refused: {text}"));
    }
    if *what != Ask::Stop {
        return Ok(text);
    }
    let pid = response
        .headers
        .get(PID_HEADER)
        .and_then(|p| p.parse().ok());
    let waited = config.shutdown_timeout + STOP_MARGIN;
    if wait_until_gone(pid, addr, waited) {
        Ok(format!("{text}\nthe proxy has stopped"))
    } else {
        Err(format!(
            "{text}\nthe proxy is still running after {} s",
            waited.as_secs()
        ))
    }
}

/// Where to reach a proxy listening on `listen`: the address itself, or loopback when it
/// listens on every address (`0.0.0.0`, `[::]`).
fn control_address(listen: &str) -> Result<SocketAddr, String> {
    let mut addr = listen
        .to_socket_addrs()
        .map_err(|e| format!("listen = {listen}: {e}"))?
        .next()
        .ok_or_else(|| format!("listen = {listen}: no address"))?;
    if addr.ip().is_unspecified() {
        let loopback: IpAddr = match addr {
            SocketAddr::V4(_) => Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => Ipv6Addr::LOCALHOST.into(),
        };
        addr.set_ip(loopback);
    }
    Ok(addr)
}

/// Waits at most `limit` for the process `pid` to end, looking in `/proc`; without a pid or
/// `/proc`, for `addr` to refuse connections. Whether it ended.
fn wait_until_gone(pid: Option<u32>, addr: SocketAddr, limit: Duration) -> bool {
    let until = Instant::now() + limit;
    let proc_dir = Path::new("/proc/self").exists();
    loop {
        let running = match pid {
            Some(pid) if proc_dir => process_runs(pid),
            _ => TcpStream::connect_timeout(&addr, STOP_POLL).is_ok(),
        };
        if !running {
            return true;
        }
        if Instant::now() >= until {
            return false;
        }
        thread::sleep(STOP_POLL);
    }
}

/// Whether process `pid` runs: it has a `/proc` entry and is not a zombie (ended, but not
/// yet collected by its parent).
fn process_runs(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // `PID (COMM) STATE ...`: COMM may hold spaces and parentheses, so look after the last `)`.
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next());
    !matches!(state, Some("Z" | "X") | None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wildcard_listen_address_is_reached_through_loopback() {
        assert_eq!(
            control_address("0.0.0.0:8080").unwrap(),
            "127.0.0.1:8080".parse().unwrap()
        );
        assert_eq!(
            control_address("[::]:8080").unwrap(),
            "[::1]:8080".parse().unwrap()
        );
        assert_eq!(
            control_address("127.0.0.1:9").unwrap(),
            "127.0.0.1:9".parse().unwrap()
        );
    }

    #[test]
    fn this_process_runs_and_a_process_that_never_was_does_not() {
        assert!(process_runs(std::process::id()));
        assert!(!process_runs(u32::MAX));
    }

    #[test]
    fn without_status_path_there_is_nothing_to_ask() {
        let config = Config {
            status_path: None,
            ..Config::default()
        };
        let why = ask(&config, &Ask::Reload).unwrap_err();
        assert!(why.contains("status_path is off"), "{why}");
    }

    #[test]
    fn a_proxy_that_is_not_running_is_said_to_be_so() {
        let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let listen = free.local_addr().unwrap().to_string();
        drop(free);
        let config = Config {
            listen,
            ..Config::default()
        };
        let why = ask(&config, &Ask::Stop).unwrap_err();
        assert!(why.contains("is it running?"), "{why}");
    }
}
