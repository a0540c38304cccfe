//! Changing a running proxy without dropping a connection: `reload` puts a new proxy.conf in
//! force, `stop` ends the proxy gracefully. The admin endpoint calls them (`POST
//! {status_path}/reload` and `/stop`, see `admin`), as `proxy --reload` and `proxy --stop`
//! do (see `control`): there is no signal handler, since that would need `unsafe` or a crate
//! outside the fixed list.
//!
//! A reload reads the file the proxy started with (and the command line's options again),
//! checks it as `proxy --check` does, and builds the next `Generation` from it: pools,
//! routes, weights, `balance`, timeouts, limits, the access log, the log's level and file.
//! Then it swaps it in: requests that have begun finish on the configuration they began
//! with, the next ones take the new one. A file with a mistake is refused whole, with its
//! mistakes, and the running configuration keeps serving. The keys that a running proxy
//! cannot take without a restart (a new listening socket, another cache, the connection
//! slots) keep their running values, and the answer lists them. Balancer state starts anew
//! with the new pools (health, drains, weights set by hand), as in an nginx reload; the
//! status page's figures stay, for every backend that stays.
//!
//! The stop: the listening socket closes at once (new connections are refused), idle
//! keep-alive connections are closed, and requests in flight get up to `shutdown_timeout`
//! to finish; then `run` returns and the proxy exits with status 0.

use std::path::PathBuf;
use std::sync::{Arc, PoisonError};

use super::admin::{Outcome, Refusal};
use super::check;
use super::config::{load_with, Config, Overrides};
use super::generation::Generation;
use super::Proxy;
use crate::logging::{self, file::LogFile};

/// Where the running configuration came from, to read it again.
#[derive(Debug, Clone)]
pub struct Origin {
    /// The configuration file.
    pub path: PathBuf,
    /// What the command line set over it.
    pub overrides: Overrides,
}

impl Proxy {
    /// Reads the configuration again and puts it in force (see the module docs): what was
    /// done, in a few lines, or the file's mistakes (a 422 refusal).
    pub(super) fn reload(&self) -> Outcome {
        let Some(origin) = self.origin.get() else {
            return Err(Refusal::new(409, "this proxy was not started from a file"));
        };
        let _one_at_a_time = self
            .reloading
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let file = origin.path.display().to_string();
        let refuse = |mistakes: Vec<String>| {
            let listed = mistakes.join("\n");
            log::warn!("reload of {file} refused, the running configuration stays:\n{listed}");
            Refusal::new(
                422,
                format!("{file} has mistakes; the running configuration stays\n{listed}"),
            )
        };
        let mut config =
            load_with(&origin.path, origin.overrides.clone()).map_err(|e| refuse(vec![e]))?;
        let old = self.generation();
        let needs_restart = keep_running_values(&old.config, &mut config);
        check::check(&config)
            .map_err(|problems| refuse(problems.iter().map(ToString::to_string).collect()))?;
        let log_file = LogFile::open(&config.log_file)
            .map_err(|why| refuse(vec![config.blame("log_file", why).to_string()]))?;
        let (level, number) = (config.log_level, old.number + 1);
        let next = Generation::build(config, &self.stats, number)
            .map_err(|e| refuse(vec![e.to_string()]))?;
        let health = next
            .health_checks()
            .map_err(|e| refuse(vec![e.to_string()]))?;
        let summary = format!(
            "reloaded {file}: configuration #{number}, {}",
            next.described_pools()
        );
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(next);
        for checks in health {
            checks.start();
        }
        logging::reconfigure(level, Some(log_file));
        log::info!("{summary}");
        let mut answer = summary;
        if !needs_restart.is_empty() {
            let keys = needs_restart.join(", ");
            log::warn!("reload: {keys} changed and need a restart: the running values stay");
            answer.push_str(&format!(
                "\nnot applied, needs a restart: {keys} (the running values stay)"
            ));
        }
        Ok(answer)
    }

    /// Begins the graceful stop (see the module docs), with `config`'s `shutdown_timeout`.
    pub(super) fn stop(&self, config: &Config) -> Outcome {
        let Some(stopper) = self.stopper.get() else {
            return Err(Refusal::new(
                409,
                "this proxy does not run a server to stop",
            ));
        };
        let grace = config.shutdown_timeout;
        stopper.stop(grace);
        Ok(format!(
            "stopping: no new connections; requests in flight get up to {} s",
            grace.as_secs()
        ))
    }
}

/// Puts back in `new` the running values of the keys that need a restart, and returns the
/// names of those whose value the file changed. They are `listen`, `max_connections`,
/// `max_connections_per_ip`, `client_timeout` and the cache's `cache`, `cache_dir`,
/// `cache_max_size`, `cache_max_object` and `cache_admission`: what they set up (the
/// listening socket, the connection slots, the cache) is built once, at start-up.
pub fn keep_running_values(running: &Config, new: &mut Config) -> Vec<&'static str> {
    let mut changed = Vec::new();
    macro_rules! keep {
        ($($key:ident),*) => {$(
            if running.$key != new.$key {
                changed.push(stringify!($key));
            }
            new.$key.clone_from(&running.$key);
        )*};
    }
    keep!(
        listen,
        max_connections,
        max_connections_per_ip,
        client_timeout,
        cache,
        cache_dir,
        cache_max_size,
        cache_max_object,
        cache_admission
    );
    changed
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn keys_that_need_a_restart_keep_their_running_values_and_are_named() {
        let running = Config::default();
        let mut new = Config {
            listen: "127.0.0.1:9999".to_string(),
            client_timeout: Duration::from_secs(99),
            cache_ttl: 5,
            upstream_timeout: Duration::from_secs(3),
            ..Config::default()
        };
        let changed = keep_running_values(&running, &mut new);
        assert_eq!(changed, ["listen", "client_timeout"]);
        assert_eq!(new.listen, running.listen);
        assert_eq!(new.client_timeout, running.client_timeout);
        assert_eq!(new.cache_ttl, 5, "cache_ttl is taken by a reload");
        assert_eq!(new.upstream_timeout, Duration::from_secs(3));
        let mut same = Config::default();
        assert!(keep_running_values(&running, &mut same).is_empty());
    }
}
