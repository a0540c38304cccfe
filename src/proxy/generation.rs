//! A configuration in force and everything built from it: the limits on requests, the
//! pools of backends (each with its balancer, idle connections and health checks), the
//! routes between them, and the access log. A reload builds the next generation from the
//! new file and swaps it in whole (see `reload`); each request holds the generation it
//! started on until it ends, so requests in flight finish on the configuration they began
//! with, and the old generation (its idle connections, its health-check threads) goes away
//! with the last of them.
//!
//! What outlives a reload is not here but in `Proxy`: the listening socket, the cache, the
//! status page's figures, the stopper.

use std::sync::Arc;

use super::access_log::AccessLog;
use super::balancer::{Balancer, HealthPolicy};
use super::config::{Backend, Config, DEFAULT_POOL, DEFAULT_WEIGHT};
use super::forward::Upstreams;
use super::health::{self, HealthChecks, ProbeSettings};
use super::rewrite::client_host;
use super::routing;
use super::stats::Stats;
use super::status_page::path_and_query;
use super::upstream::Pool;
use crate::error::Result;
use crate::http::parse::Limits;
use crate::http::Request;

/// One configuration in force (see the module docs).
pub(crate) struct Generation {
    /// Counts the configurations the proxy has run with: 1 at start, one more per reload.
    pub(super) number: u64,
    pub(super) config: Config,
    /// Limits on a client's request head.
    pub(super) limits: Limits,
    /// The pools: the default one (the `backend` lines) first, then the `pool` lines'.
    pub(super) pools: Vec<Upstreams>,
    /// For each of `config.routes`, the index of its pool in `pools`.
    route_pools: Vec<usize>,
    /// The Combined Log Format file, when configured.
    pub(super) access_log: Option<AccessLog>,
}

impl Generation {
    /// Builds everything `config` describes, with its backends' figures from `stats` (so a
    /// backend a reload keeps keeps them). Starts nothing: see `health_checks`.
    ///
    /// # Errors
    /// When the access log cannot be opened (see `Config::blame`).
    pub(super) fn build(config: Config, stats: &Stats, number: u64) -> Result<Generation> {
        let limits = Limits {
            max_line: config.max_request_line,
            max_header_bytes: config.max_header_bytes,
            max_headers: config.max_headers,
        };
        let named = config.pools.iter().map(|p| (p.name.as_str(), &p.backends));
        let pools: Vec<Upstreams> = [(DEFAULT_POOL, &config.backends)]
            .into_iter()
            .chain(named)
            .map(|(name, backends)| upstreams(&config, name, backends, stats))
            .collect();
        let route_pools = config
            .routes
            .iter()
            .map(|route| pools.iter().position(|p| p.name == route.pool).unwrap_or(0))
            .collect();
        let access_log = config
            .access_log
            .as_deref()
            .map(|path| AccessLog::open(path, config.access_log_format))
            .transpose()
            .map_err(|why| config.blame("access_log", why))?;
        Ok(Generation {
            number,
            config,
            limits,
            pools,
            route_pools,
            access_log,
        })
    }

    /// The index in `pools` of the pool `request` goes to (see `routing`).
    pub(super) fn pool_of(&self, request: &Request) -> usize {
        let (path, _) = path_and_query(request);
        self.pool_for(client_host(request), path)
    }

    /// The index in `pools` of the pool for `host` and `path`.
    fn pool_for(&self, host: &str, path: &str) -> usize {
        routing::choose(&self.config.routes, host, path).map_or(0, |i| self.route_pools[i])
    }

    /// The cache key under which the response for the URI key `uri` (`http://host/path`,
    /// see `cache::cache_key`) is stored: the URI itself for the default pool, the pool's name
    /// and a space before it for another, so that a route moved by a reload never serves one
    /// application's responses for another's.
    pub(super) fn scoped_key(&self, uri: String) -> String {
        if self.config.routes.is_empty() {
            return uri;
        }
        let (host, path) = uri
            .strip_prefix("http://")
            .and_then(|rest| rest.find('/').map(|i| rest.split_at(i)))
            .unwrap_or(("", "/"));
        let path = path.split('?').next().unwrap_or(path);
        match self.pool_for(host, path) {
            0 => uri,
            pool => format!("{} {uri}", self.pools[pool].name),
        }
    }

    /// One health-check thread per pool when `health_check` is set, created but not yet
    /// probing.
    ///
    /// # Errors
    /// When a thread cannot be created.
    pub(super) fn health_checks(&self) -> Result<Vec<HealthChecks>> {
        let Some(path) = &self.config.health_check else {
            return Ok(Vec::new());
        };
        let settings = ProbeSettings {
            path: path.clone(),
            interval: self.config.health_interval,
            connect_timeout: self.config.connect_timeout,
            io_timeout: self.config.upstream_timeout,
        };
        self.pools
            .iter()
            .map(|pool| {
                health::spawn(&pool.balancer, pool.labels.clone(), settings.clone()).map_err(|e| {
                    let why = format!("cannot start the health-check thread: {e}");
                    self.config.blame("health_check", why)
                })
            })
            .collect()
    }

    /// Closes idle pooled connections that are dead or idle too long, in every pool.
    pub(super) fn reap_pools(&self) {
        for pool in &self.pools {
            pool.reap_pool();
        }
    }

    /// The pools, each with its backends as the start-up line lists them: `host:port`, with
    /// its options when it has any.
    pub(super) fn described_pools(&self) -> String {
        let described = |pool: &Upstreams| {
            let backends: Vec<String> = pool.balancer.backends().iter().map(described).collect();
            backends.join(", ")
        };
        match &self.pools[..] {
            [only] => format!("backends: {}", described(only)),
            pools => {
                let each: Vec<String> = pools
                    .iter()
                    .map(|pool| format!("pool {}: {}", pool.name, described(pool)))
                    .collect();
                each.join("; ")
            }
        }
    }
}

/// The pool `name` of `backends`, as `config` says to balance and keep them.
fn upstreams(config: &Config, name: &str, backends: &[Backend], stats: &Stats) -> Upstreams {
    let authorities: Vec<String> = backends.iter().map(Backend::authority).collect();
    let labels: Vec<Arc<str>> = authorities
        .iter()
        .map(|authority| match name {
            DEFAULT_POOL => Arc::from(authority.as_str()),
            _ => Arc::from(format!("{name}/{authority}")),
        })
        .collect();
    Upstreams {
        name: name.to_string(),
        balancer: Arc::new(Balancer::new(
            backends.to_vec(),
            config.balance,
            HealthPolicy {
                max_fails: config.max_fails,
                fail_timeout: config.fail_timeout,
            },
        )),
        pool: Pool::new(
            backends.len(),
            config.upstream_keepalive,
            config.upstream_idle_timeout,
        ),
        counters: labels.iter().map(|label| stats.counters(label)).collect(),
        labels,
        authorities,
        limits: Limits {
            max_line: config.max_response_header_bytes,
            max_header_bytes: config.max_response_header_bytes,
            max_headers: config.max_headers,
        },
    }
}

/// A backend as the start-up line lists it: `host:port`, with its options when it has any.
fn described(backend: &Backend) -> String {
    let mut text = backend.authority();
    if backend.weight != DEFAULT_WEIGHT {
        text.push_str(&format!(" weight={}", backend.weight));
    }
    if backend.backup {
        text.push_str(" backup");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::parse::{read_request, Limits};
    use crate::proxy::config::{parse_route, Pool as PoolLine};

    fn generation(routes: &[&str]) -> Generation {
        let pool = |name: &str, port: u16| PoolLine {
            name: name.to_string(),
            backends: vec![format!("127.0.0.1:{port}").parse().unwrap()],
        };
        let config = Config {
            access_log: None,
            cache: false,
            backends: vec!["127.0.0.1:8081".parse().unwrap()],
            pools: vec![pool("api", 9001), pool("shop", 9002)],
            routes: routes.iter().map(|r| parse_route(r).unwrap()).collect(),
            ..Config::default()
        };
        Generation::build(config, &Stats::new(), 1).unwrap()
    }

    fn pool_name<'g>(g: &'g Generation, raw: &str) -> &'g str {
        let request = read_request(&mut raw.as_bytes(), &Limits::default())
            .unwrap()
            .unwrap();
        &g.pools[g.pool_of(&request)].name
    }

    #[test]
    fn requests_go_to_the_pool_of_their_route() {
        let g = generation(&["/api/ api", "Shop.example/ shop"]);
        let names: Vec<&str> = g.pools.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["default", "api", "shop"]);
        assert_eq!(
            pool_name(&g, "GET /api/v1?x=1 HTTP/1.1\r\nHost: a\r\n\r\n"),
            "api"
        );
        assert_eq!(
            pool_name(&g, "GET /apix HTTP/1.1\r\nHost: a\r\n\r\n"),
            "default"
        );
        assert_eq!(
            pool_name(&g, "GET /api/ HTTP/1.1\r\nHost: shop.example:80\r\n\r\n"),
            "shop"
        );
        assert_eq!(
            pool_name(&g, "GET http://SHOP.example/x HTTP/1.1\r\nHost: a\r\n\r\n"),
            "shop"
        );
    }

    #[test]
    fn backends_of_named_pools_are_labelled_with_their_pool() {
        let g = generation(&[]);
        assert_eq!(&*g.pools[0].labels[0], "127.0.0.1:8081");
        assert_eq!(&*g.pools[1].labels[0], "api/127.0.0.1:9001");
        assert!(g.described_pools().contains("pool api: 127.0.0.1:9001"));
    }

    #[test]
    fn cache_keys_name_the_pool_unless_it_is_the_default_one() {
        let g = generation(&["/api/ api"]);
        assert_eq!(
            g.scoped_key("http://h/api/x?y".into()),
            "api http://h/api/x?y"
        );
        assert_eq!(g.scoped_key("http://h/other".into()), "http://h/other");
        let unrouted = generation(&[]);
        assert_eq!(
            unrouted.scoped_key("http://h/api/x".into()),
            "http://h/api/x"
        );
    }
}
