//! `proxy --check`: everything start-up would refuse, found without starting anything. The
//! configuration file has been parsed already (`config::load` refuses a file with a
//! mistake); this adds what parsing cannot know: that the files and directories the proxy
//! writes can be created, and that the backends' names resolve. No socket is bound, no
//! log line written, no directory created: a directory that does not exist yet is checked by
//! its nearest existing parent, in which a probe file is created and removed at once.
//!
//! `systemd`'s `ExecStartPre=` runs it, so a file with a mistake never starts (see
//! deploy/), and `--reload` runs the same checks in the running proxy before it takes a
//! new file.

use std::fs::{self, OpenOptions};
use std::net::ToSocketAddrs;
use std::path::Path;

use super::config::Config;
use crate::cache::TEMP_PREFIX;
use crate::error::Error;

/// Checks `config` as start-up would, without starting: `Ok` with a one-line summary, or
/// every problem found, each naming its key and proxy.conf line.
///
/// # Errors
/// One `Error` per problem: a listen address that does not resolve, a log file, access log
/// or cache directory that cannot be created or written, a backend whose name does not
/// resolve.
pub fn check(config: &Config) -> Result<String, Vec<Error>> {
    let mut problems = Vec::new();
    if let Err(e) = config.listen.to_socket_addrs() {
        problems.push(config.blame("listen", format!("cannot resolve: {e}")));
    }
    if let Err(why) = writable_file(&config.log_file) {
        problems.push(config.blame("log_file", why));
    }
    if let Some(access_log) = &config.access_log {
        if let Err(why) = writable_file(access_log) {
            problems.push(config.blame("access_log", why));
        }
    }
    if config.cache {
        if let Err(why) = writable_dir(&config.cache_dir) {
            problems.push(config.blame("cache_dir", why));
        }
    }
    for (at, backend) in config.every_backend() {
        if let Err(e) = (backend.host.as_str(), backend.port).to_socket_addrs() {
            let why = format!("{at}: cannot resolve `{}`: {e}", backend.host);
            problems.push(Error::Config(why));
        }
    }
    if problems.is_empty() {
        Ok(summary(config))
    } else {
        Err(problems)
    }
}

/// What the configuration sets up, in one line.
fn summary(config: &Config) -> String {
    let backends = config.every_backend().len();
    let cache = if config.cache {
        format!(
            "cache in {} ({} s by default)",
            config.cache_dir.display(),
            config.cache_ttl
        )
    } else {
        "cache off".to_string()
    };
    let pools = match config.pools.len() {
        0 => String::new(),
        named => format!(
            " in {} pools, {} route{}",
            named + 1,
            config.routes.len(),
            if config.routes.len() == 1 { "" } else { "s" }
        ),
    };
    format!(
        "{}: OK: listen {}, {backends} backend{}{pools}, {cache}, log {}",
        config.sources.file(),
        config.listen,
        if backends == 1 { "" } else { "s" },
        config.log_file.display()
    )
}

/// Whether a file can be appended to at `path`: an existing one opened for appending, or
/// one that can be created in its directory (or in that directory's nearest existing parent,
/// when the directory itself would have to be created).
fn writable_file(path: &Path) -> Result<(), String> {
    match fs::metadata(path) {
        Ok(meta) if meta.is_dir() => Err(format!("{} is a directory", path.display())),
        Ok(_) => OpenOptions::new()
            .append(true)
            .open(path)
            .map(drop)
            .map_err(|e| format!("cannot write {}: {e}", path.display())),
        Err(_) => {
            let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
            writable_dir(dir.unwrap_or(Path::new(".")))
        }
    }
}

/// Whether files can be created in `dir`, or in its nearest existing parent when it does
/// not exist yet (it would be created there). A probe file is created and removed.
fn writable_dir(dir: &Path) -> Result<(), String> {
    let existing = dir
        .ancestors()
        .map(|p| {
            if p.as_os_str().is_empty() {
                Path::new(".")
            } else {
                p
            }
        })
        .find(|p| fs::symlink_metadata(p).is_ok())
        .unwrap_or(Path::new("."));
    if !fs::metadata(existing).is_ok_and(|m| m.is_dir()) {
        return Err(format!(
            "cannot create {}: {} is in the way and is not a directory",
            dir.display(),
            existing.display()
        ));
    }
    let probe = existing.join(format!("{TEMP_PREFIX}check-{}", std::process::id()));
    fs::File::create(&probe)
        .and_then(|_| fs::remove_file(&probe))
        .map_err(|e| format!("cannot create files in {}: {e}", existing.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::config::parse;
    use crate::testing::TempDir;

    fn config(dir: &TempDir, extra: &str) -> Config {
        let text = format!(
            "backend = 127.0.0.1:8081\nlog_file = {}\naccess_log = {}\ncache_dir = {}\n{extra}",
            dir.join("logs/proxy.log").display(),
            dir.join("logs/access.log").display(),
            dir.join("cache").display(),
        );
        parse(&text, "proxy.conf").unwrap()
    }

    #[test]
    fn a_good_file_is_summed_up_and_nothing_is_created() {
        let dir = TempDir::new("check-good");
        let said = check(&config(&dir, "")).unwrap();
        assert!(
            said.starts_with("proxy.conf: OK: listen 0.0.0.0:8080, 1 backend, cache in "),
            "{said}"
        );
        let left: Vec<_> = fs::read_dir(&dir.path).unwrap().collect();
        assert!(left.is_empty(), "check created {left:?}");
    }

    #[test]
    fn every_problem_is_reported_with_its_line() {
        let dir = TempDir::new("check-bad");
        fs::write(dir.join("logs"), b"a file where a directory should be").unwrap();
        fs::write(dir.join("cache"), b"another").unwrap();
        let extra = "backend = no-such-host.invalid:8082\n";
        let problems = check(&config(&dir, extra)).unwrap_err();
        let said: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert_eq!(said.len(), 4, "{said:?}");
        assert!(
            said[0].starts_with("proxy.conf:2: log_file: cannot create "),
            "{}",
            said[0]
        );
        assert!(
            said[1].starts_with("proxy.conf:3: access_log: "),
            "{}",
            said[1]
        );
        assert!(
            said[2].starts_with("proxy.conf:4: cache_dir: cannot create "),
            "{}",
            said[2]
        );
        assert!(
            said[3].starts_with("proxy.conf:5: backend: cannot resolve `no-such-host.invalid`"),
            "{}",
            said[3]
        );
    }

    #[test]
    fn an_existing_directory_in_the_place_of_a_log_is_refused() {
        let dir = TempDir::new("check-dir");
        fs::create_dir_all(dir.join("logs/proxy.log")).unwrap();
        let problems = check(&config(&dir, "")).unwrap_err();
        assert!(
            problems[0]
                .to_string()
                .ends_with("proxy.log is a directory"),
            "{}",
            problems[0]
        );
    }
}
