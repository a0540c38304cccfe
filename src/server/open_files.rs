//! The open-file limit, checked at start-up against `max_connections`.
//!
//! A connection being served holds two file descriptors, its own socket and a backend's.
//! When the process's soft limit (`ulimit -n`, RLIMIT_NOFILE) cannot hold that many for every
//! slot, the slots are lowered to what it can hold, with a warning that says how to raise
//! it. Lowered, not just warned about: past the limit `accept` and backend connects fail
//! with EMFILE, so new clients would wait unanswered in the listen queue (never reaching the
//! accept loop that reclaims idle connections or answers 503), and backends would look down.
//! The limit is read from `/proc/self/limits` (Linux); where that cannot be read, or says
//! `unlimited`, nothing is checked.

/// File descriptors one connection holds while it is served: the client's socket and a
/// backend's.
pub const FDS_PER_CONNECTION: usize = 2;
/// File descriptors kept for everything that is not a connection: the listener, standard
/// streams, log files, cache files being read or written, health probes, and the proxy's
/// splice pipes (at most `proxy::splice::MAX_PIPES`, 16, two descriptors each).
pub const FD_RESERVE: usize = 64;

/// The soft open-file limit of this process, from the `Max open files` line of
/// `/proc/self/limits`; `None` when unknown or unlimited.
pub fn soft_limit() -> Option<usize> {
    parse_soft_limit(&std::fs::read_to_string("/proc/self/limits").ok()?)
}

/// The soft limit in the text of a `/proc/PID/limits` file, whose lines look like
/// `Max open files            1024                 524288               files`.
pub fn parse_soft_limit(limits: &str) -> Option<usize> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Open files needed to serve `connections` at once, with `reserved` more kept for idle
/// backend connections and `FD_RESERVE` for the rest.
pub fn files_needed(connections: usize, reserved: usize) -> usize {
    connections
        .saturating_mul(FDS_PER_CONNECTION)
        .saturating_add(reserved)
        .saturating_add(FD_RESERVE)
}

/// How many of `wanted` connections fit in `soft` open files when `reserved` of them (and
/// `FD_RESERVE`) are kept for other things: all of them when they fit, and at least one.
pub fn connections_within(soft: usize, wanted: usize, reserved: usize) -> usize {
    let spare = soft.saturating_sub(reserved.saturating_add(FD_RESERVE));
    wanted.min(spare / FDS_PER_CONNECTION).max(1)
}

/// `wanted` connections, lowered to what this process's open-file limit holds when
/// `reserved` files go to idle backend connections, and when lowered, the warning to log
/// (the caller logs it once it has printed its `listening on` line, which must come first).
pub fn fit_connections(wanted: usize, reserved: usize) -> (usize, Option<String>) {
    let Some(soft) = soft_limit() else {
        return (wanted, None);
    };
    let fitted = connections_within(soft, wanted, reserved);
    if fitted >= wanted {
        return (fitted, None);
    }
    let needed = files_needed(wanted, reserved);
    let warning = format!(
        "max_connections = {wanted} needs {needed} open files, and the limit (ulimit -n) is \
         {soft}: serving at most {fitted} connections at once; raise the limit with \
         `ulimit -n {needed}` (or LimitNOFILE= in a systemd unit)"
    );
    (fitted, Some(warning))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: &str = "\
Limit                     Soft Limit           Hard Limit           Units     
Max cpu time              unlimited            unlimited            seconds   
Max open files            1024                 524288               files     
Max locked memory         8388608              8388608              bytes     
";

    #[test]
    fn the_soft_limit_is_read_from_proc_limits() {
        assert_eq!(parse_soft_limit(LIMITS), Some(1024));
        let unlimited = LIMITS.replace("1024   ", "unlimited");
        assert_eq!(parse_soft_limit(&unlimited), None);
        assert_eq!(
            parse_soft_limit("Max cpu time  unlimited unlimited seconds\n"),
            None
        );
        assert_eq!(parse_soft_limit(""), None);
        assert_eq!(parse_soft_limit("Max open files\n"), None);
    }

    #[test]
    fn this_process_has_a_soft_limit_on_linux() {
        if cfg!(target_os = "linux") {
            assert!(soft_limit().is_some_and(|n| n > 0));
        }
    }

    #[test]
    fn connections_that_fit_are_kept() {
        assert_eq!(connections_within(65_536, 10_000, 96), 10_000);
        let exact = files_needed(10_000, 96);
        assert_eq!(connections_within(exact, 10_000, 96), 10_000);
    }

    #[test]
    fn connections_beyond_the_limit_are_lowered_to_two_files_each() {
        // 1024 files, 96 idle backend connections and 64 in reserve: 864 left, 432 slots.
        assert_eq!(connections_within(1024, 10_000, 96), 432);
        assert_eq!(
            connections_within(files_needed(10_000, 96) - 1, 10_000, 96),
            9_999
        );
    }

    #[test]
    fn at_least_one_connection_is_served() {
        assert_eq!(connections_within(10, 10_000, 96), 1);
        assert_eq!(connections_within(0, 10_000, usize::MAX), 1);
    }

    #[test]
    fn files_needed_saturates() {
        assert_eq!(files_needed(usize::MAX, 1), usize::MAX);
    }
}
