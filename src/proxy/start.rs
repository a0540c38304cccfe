//! Starting the proxy: everything it needs is opened or created first (the listening
//! socket, the cache directory, the access log, the health-check thread), and only then is
//! `listening on IP:PORT` printed, so that a printed address means a proxy that started.
//! Background work that logs (the cache's count of its entries, the health checks, the
//! check of backend names, the reaper of idle backend connections) begins after that line,
//! which must be the first on stdout. Also `proxy --flush-cache`.
//!
//! What happens on each connection is `proxy`'s (see its module docs); this file only
//! builds the `Proxy` and hands it to `server`.

use std::fs::{self, File};
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::thread;

use super::caching::SharedCache;
use super::config::{Backend, Config};
use super::generation::Generation;
use super::purge::KnownHosts;
use super::reload::Origin;
use super::stats::Stats;
use super::upstream::POOL_REAP_INTERVAL;
use super::Proxy;
use crate::cache::{InFlight, PassMarks, Store, TEMP_PREFIX};
use crate::error::{Error, Result};
use crate::logging::file as log_file;
use crate::server;

/// Stack size of the thread that checks the backends' names at start-up (bytes): it only
/// calls the resolver.
const RESOLVE_CHECK_STACK_SIZE: usize = 128 * 1024;

/// Starts the proxy and serves until stopped: binds the configured address, opens or
/// creates everything it will need (access log, cache directory, health-check threads), and
/// only then prints `listening on IP:PORT` on stdout, so that a printed address means a
/// proxy that started. (The log file is opened before, by the caller.) `origin` is where
/// the configuration came from, for reloads. Returns once a stop has ended the server.
///
/// # Errors
/// A start-up failure, naming the key whose value caused it and the proxy.conf line that
/// set it (see `Config::blame`): the address cannot be bound, the access log or the cache
/// directory cannot be created, the health-check thread cannot be started.
pub fn run(config: Config, origin: Origin) -> Result<()> {
    let listener = server::bind(&config.listen).map_err(|e| config.blame("listen", e))?;
    let unreadable = |e| config.blame("listen", format!("cannot read the listening address: {e}"));
    let addr = listener.local_addr().map_err(unreadable)?;
    let stopper = server::Stopper::new(&listener).map_err(unreadable)?;
    if config.cache {
        prepare_cache_dir(&config)?;
    }
    let (max_connections, too_few_files) = fit_to_open_files(&config);
    let settings = server::Settings {
        max_connections,
        max_connections_per_ip: config.max_connections_per_ip,
        client_timeout: config.client_timeout,
    };
    let proxy = Arc::new(Proxy::new(config)?);
    let _ = proxy.origin.set(origin);
    let gen = proxy.generation();
    let health = gen.health_checks()?;
    println!("listening on {addr}");
    proxy.log_start(&gen, addr);
    // Started after the line above, which must be the first on stdout: the count of the
    // entries already on disk logs what it found.
    if let Some(cache) = &proxy.cache {
        cache
            .store
            .start_upkeep()
            .map_err(|e| Error::Startup(format!("cannot start the cache's upkeep thread: {e}")))?;
    }
    if let Some(warning) = too_few_files {
        log::warn!("{warning}");
    }
    for checks in health {
        checks.start();
    }
    check_backend_names(&gen.config);
    drop(gen);
    let reaper = Arc::clone(&proxy);
    thread::Builder::new()
        .name("pool-reaper".to_string())
        .spawn(move || loop {
            thread::sleep(POOL_REAP_INTERVAL);
            reaper.generation().reap_pools();
        })
        .map_err(|e| Error::Startup(format!("cannot start the pool reaper: {e}")))?;
    let active = Arc::clone(&proxy.stats.active_connections);
    let stopper = proxy.stopper.get_or_init(|| stopper).clone();
    server::serve(listener, settings, active, &stopper, move |stream, peer| {
        proxy.handle_connection(stream, peer);
    });
    log::info!("proxy stopped");
    Ok(())
}

/// `max_connections`, lowered to what the open-file limit holds: two files per connection,
/// and one for each idle backend connection the pool may keep; and the warning to log
/// when it was lowered.
fn fit_to_open_files(config: &Config) -> (usize, Option<String>) {
    let pooled = config
        .upstream_keepalive
        .saturating_mul(config.every_backend().len());
    server::fit_connections(config.max_connections, pooled)
}

/// Creates `cache_dir` and checks that a file can be created in it, so that a cache that
/// could store nothing stops start-up instead of warning on every response.
fn prepare_cache_dir(config: &Config) -> Result<()> {
    let dir = &config.cache_dir;
    let blame = |why| config.blame("cache_dir", why);
    log_file::create_dir_all(dir).map_err(blame)?;
    // A temporary file's name: `flush` and the store's start-up clean-up remove leftovers.
    let probe = dir.join(format!("{TEMP_PREFIX}startup-{}", std::process::id()));
    File::create(&probe)
        .and_then(|_| fs::remove_file(&probe))
        .map_err(|e| blame(format!("cannot create files in {}: {e}", dir.display())))
}

/// Warns about every backend whose name does not resolve now, with the line that lists it.
///
/// A warning, not an error as in nginx ("host not found in upstream"): Relevo looks a name
/// up again for every new connection, so a backend whose name appears later (a container
/// started after the proxy, a DNS record not yet published) starts taking requests without
/// a restart, and meanwhile its requests fail over to the other backends. Refusing to start
/// would trade that for catching a typo, which this warning, on the terminal at start-up,
/// catches too. It runs on a thread of its own, after `listening on`, so a slow resolver
/// delays nothing.
fn check_backend_names(config: &Config) {
    let backends: Vec<(Backend, String)> = config
        .every_backend()
        .into_iter()
        .map(|(at, backend)| (backend.clone(), at))
        .collect();
    let checked = thread::Builder::new()
        .name("resolve-check".to_string())
        .stack_size(RESOLVE_CHECK_STACK_SIZE)
        .spawn(move || {
            for (backend, at) in backends {
                if let Err(e) = (backend.host.as_str(), backend.port).to_socket_addrs() {
                    log::warn!(
                        "{at}: cannot resolve `{}` ({e}): check the name; until it resolves, \
                         its requests fail over to the other backends (it is looked up again \
                         for every new connection)",
                        backend.host
                    );
                }
            }
        });
    if let Err(e) = checked {
        log::warn!("cannot start the check of backend names: {e}");
    }
}

/// `proxy --flush-cache`: removes the cache's entry files (and leftover temporary files)
/// from `cache_dir`, and says what it removed. Other files there stay.
///
/// # Errors
/// `Error::Startup` when the directory cannot be read or a file cannot be removed.
pub fn flush_cache(config: &Config) -> Result<String> {
    let dir = &config.cache_dir;
    let store = Store::new(dir, config.cache_max_size, config.cache_max_object);
    let (files, bytes) = store
        .flush()
        .map_err(|e| Error::Startup(format!("cannot flush {}: {e}", dir.display())))?;
    Ok(format!(
        "removed {files} files ({bytes} B) from {}",
        dir.display()
    ))
}

impl Proxy {
    /// A proxy for `config`, its first generation built, its cache opened (not yet counted).
    ///
    /// # Errors
    /// When the access log cannot be opened (see `Config::blame`).
    pub fn new(config: Config) -> Result<Self> {
        let cache = config.cache.then(|| {
            Arc::new(SharedCache {
                store: Store::new(
                    &config.cache_dir,
                    config.cache_max_size,
                    config.cache_max_object,
                )
                .with_admission(config.cache_admission),
                in_flight: InFlight::new(),
                pass: PassMarks::new(),
                refreshing: AtomicUsize::new(0),
                hosts: KnownHosts::load(&config.cache_dir),
            })
        });
        let stats = Stats::new();
        let first = Generation::build(config, &stats, 1)?;
        Ok(Proxy {
            current: RwLock::new(Arc::new(first)),
            stats,
            cache,
            stopper: OnceLock::new(),
            origin: OnceLock::new(),
            reloading: Mutex::new(()),
        })
    }

    /// Logs what the proxy started with, once `listening on` is out.
    fn log_start(&self, gen: &Generation, addr: SocketAddr) {
        let config = &gen.config;
        log::info!(
            "proxy listening on {addr}, balance = {}, {}",
            config.balance,
            gen.described_pools()
        );
        if config.cache {
            log::info!(
                "cache in {}: {} s for responses without their own lifetime, at most {} B in \
                 total, {} B per response",
                config.cache_dir.display(),
                config.cache_ttl,
                config.cache_max_size,
                config.cache_max_object
            );
        } else {
            log::info!("cache off");
        }
        if let Some(path) = &config.health_check {
            log::info!(
                "health checks: GET {path} every {:?}",
                config.health_interval
            );
        }
    }
}
