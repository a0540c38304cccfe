//! Which backend gets each request: the `balance` algorithm over the configured backends,
//! skipping the ones that are down, drained or disabled.
//!
//! One `Mutex` guards the rotation index (round robin's, the one the course describes), the
//! smooth weighted round robin scores, the hash rings, and each backend's weight, place in
//! rotation (`Admin`) and health. A request asks for its `plan`, the order in which to try
//! backends, and then reports how each attempt went. Passive health checking (as nginx's
//! `max_fails` / `fail_timeout`): `max_fails` failures in a row mark a backend down for
//! `fail_timeout`, after which it gets traffic again; one success clears its count. When
//! every backend is down, the plan still lists the ones in rotation, so the proxy tries
//! rather than failing without trying.
//!
//! Each attempt on a backend holds a `Lease`, which counts it as a request in flight there
//! until it is dropped, whichever way the request leaves the backend (answered, failed,
//! retried elsewhere, a tunnel closed): `least_conn` and `random_two` compare those counts,
//! and a drain is over when its backend's count is back to zero.
//!
//! Connecting and deciding what counts as a failure is `proxy`'s job; this module only keeps
//! the score. The decisions themselves are pure functions with time, load and chance passed
//! in (`choice::plan`, `Health::record_failure`, `ring`), so they are tested without threads,
//! sockets or sleeping. The only randomness, for `random_two`, comes from std: the
//! `RandomState` every `HashMap` uses, whose SipHash keys the standard library seeds from
//! the operating system's random source, hashing a counter (`Balancer::draw`).

mod choice;
mod ring;

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::proxy::config::{Backend, Balance};
pub use choice::Admin;
use choice::{Inputs, State};

/// Passive health settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HealthPolicy {
    /// Failures in a row that mark a backend down; 0 never marks one down.
    pub max_fails: u32,
    /// How long a backend stays down.
    pub fail_timeout: Duration,
}

/// What the balancer knows about one backend's health.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Health {
    /// Failures in a row since the last success.
    pub fails: u32,
    /// Until when the backend is skipped, when it is down.
    pub down_until: Option<Instant>,
    /// Why it was last marked down.
    pub reason: Option<String>,
    /// Marked down by the active health check, until a probe succeeds.
    pub probe_down: bool,
    /// When it was last marked down (passively or by a probe).
    pub down_since: Option<Instant>,
}

impl Health {
    /// Whether the backend is skipped at `now`.
    pub fn is_down(&self, now: Instant) -> bool {
        self.probe_down || self.down_until.is_some_and(|until| now < until)
    }

    /// Records an active health check; returns true when this changes whether the backend
    /// is up. A failed probe takes the backend out until a probe succeeds; a good probe
    /// also clears a passive mark (the backend has shown it answers).
    pub fn record_probe(&mut self, ok: bool, now: Instant, why: &str) -> bool {
        let was_down = self.is_down(now);
        if ok {
            *self = Health::default();
        } else {
            if !was_down {
                self.down_since = Some(now);
            }
            self.probe_down = true;
            self.reason = Some(why.to_string());
        }
        was_down != self.is_down(now)
    }

    /// Counts a failure; returns true when this failure marks the backend down.
    pub fn record_failure(&mut self, policy: HealthPolicy, now: Instant, why: &str) -> bool {
        self.fails = self.fails.saturating_add(1);
        if policy.max_fails == 0 || self.fails < policy.max_fails || self.is_down(now) {
            return false;
        }
        self.down_until = Some(now + policy.fail_timeout);
        self.down_since = Some(now);
        self.reason = Some(why.to_string());
        true
    }

    /// Counts a success; returns true when the backend was down (or counted as failing) and
    /// is now up again.
    pub fn record_success(&mut self) -> bool {
        let was_failing = self.down_until.is_some();
        *self = Health::default();
        was_failing
    }
}

/// The backends, the rotation and their health, weights, places in rotation and loads.
#[derive(Debug)]
pub struct Balancer {
    backends: Vec<Backend>,
    balance: Balance,
    policy: HealthPolicy,
    state: Mutex<State>,
    /// Requests in flight on each backend (attempts holding a `Lease`). Invariant: one per
    /// backend, in configuration order.
    load: Vec<AtomicUsize>,
    /// `random_two`'s source: SipHash with keys std drew from the OS, over `draws`.
    random: RandomState,
    /// Draws so far, hashed into each new random number.
    draws: AtomicU64,
}

/// What a request offers the hashing algorithms to key on.
#[derive(Clone, Copy, Debug)]
pub struct Affinity<'a> {
    /// The client's address (`ip_hash`).
    pub client: IpAddr,
    /// The request's path and query, as sent (`uri_hash`).
    pub uri: &'a str,
}

/// What the status page shows of one backend, taken at one moment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackendView {
    /// `host:port`.
    pub address: String,
    /// Its weight now.
    pub weight: u32,
    /// Whether it is a backup.
    pub backup: bool,
    /// In rotation, draining or disabled.
    pub admin: Admin,
    /// Requests in flight on it.
    pub active: usize,
    /// Its health.
    pub health: Health,
}

impl BackendView {
    /// The state shown for it at `now`: `disabled`, `draining` (while requests are still in
    /// flight; then `disabled`), `down` or `up`.
    pub fn state(&self, now: Instant) -> &'static str {
        match self.admin {
            Admin::Disabled => "disabled",
            Admin::Draining if self.active > 0 => "draining",
            Admin::Draining => "disabled",
            Admin::Active if self.health.is_down(now) => "down",
            Admin::Active => "up",
        }
    }
}

impl Balancer {
    /// A balancer using `balance` that starts with the first backend, all of them up and in
    /// rotation at their configured weights.
    pub fn new(backends: Vec<Backend>, balance: Balance, policy: HealthPolicy) -> Self {
        let state = State::new(&backends, balance);
        Balancer {
            load: backends.iter().map(|_| AtomicUsize::new(0)).collect(),
            backends,
            balance,
            policy,
            state: Mutex::new(state),
            random: RandomState::new(),
            draws: AtomicU64::new(0),
        }
    }

    /// The backends, in configuration order; indexes into this are backend ids.
    pub fn backends(&self) -> &[Backend] {
        &self.backends
    }

    /// The order in which one request tries the backends, each at most once, as the leases
    /// its attempts hold (see `choice::plan`); advances the rotation. The first attempt is
    /// counted in flight before the lock is released, so requests choosing at the same
    /// moment see each other's load.
    pub fn plan(self: &Arc<Self>, now: Instant, affinity: &Affinity<'_>) -> Plan {
        let key = match self.balance {
            Balance::IpHash => ring::point(affinity.client.to_canonical().to_string().as_bytes()),
            Balance::UriHash => ring::point(affinity.uri.as_bytes()),
            _ => 0,
        };
        let random = match self.balance {
            Balance::RandomTwo => self.draw(),
            _ => 0,
        };
        let mut state = self.lock();
        let load: Vec<usize> = self.load.iter().map(|l| l.load(Ordering::SeqCst)).collect();
        let inputs = Inputs {
            now,
            load: &load,
            key,
            random,
        };
        let order = choice::plan(&mut state, self.balance, &inputs);
        let first = order.first().map(|&id| Lease::take(self, id));
        drop(state);
        Plan {
            balancer: Arc::clone(self),
            first,
            rest: order.into_iter().skip(1).collect::<Vec<_>>().into_iter(),
        }
    }

    /// A new random number: SipHash-1-3, keyed by `RandomState` (random keys std takes from
    /// the operating system once per thread, then varies per `RandomState`), of a counter.
    /// Not for secrets; plenty to spread requests.
    fn draw(&self) -> u64 {
        self.random
            .hash_one(self.draws.fetch_add(1, Ordering::Relaxed))
    }

    /// Records a failed attempt on backend `id`. Returns true when it is now marked down.
    pub fn record_failure(&self, id: usize, now: Instant, why: &str) -> bool {
        let policy = self.policy;
        self.lock()
            .members
            .get_mut(id)
            .is_some_and(|m| m.health.record_failure(policy, now, why))
    }

    /// Records a successful exchange with backend `id`. Returns true when it was down.
    pub fn record_success(&self, id: usize) -> bool {
        self.lock()
            .members
            .get_mut(id)
            .is_some_and(|m| m.health.record_success())
    }

    /// Records an active health check of backend `id`; returns true when its state changed.
    pub fn record_probe(&self, id: usize, ok: bool, now: Instant, why: &str) -> bool {
        self.lock()
            .members
            .get_mut(id)
            .is_some_and(|m| m.health.record_probe(ok, now, why))
    }

    /// The id of the backend `backend` names (see `Backend::same_as`), if one does.
    pub fn find(&self, backend: &Backend) -> Option<usize> {
        self.backends.iter().position(|b| b.same_as(backend))
    }

    /// Puts backend `id` in rotation, draining or disabled; returns what it was.
    pub fn set_admin(&self, id: usize, admin: Admin) -> Option<Admin> {
        let mut state = self.lock();
        let member = state.members.get_mut(id)?;
        Some(std::mem::replace(&mut member.admin, admin))
    }

    /// Gives backend `id` a new weight (1..=`MAX_WEIGHT`, checked by the caller); returns
    /// the old one.
    pub fn set_weight(&self, id: usize, weight: u32) -> Option<u32> {
        self.lock().set_weight(id, weight, &self.backends)
    }

    /// Whether backend `id` is in rotation (not drained or disabled): a connection to one
    /// that is not goes back to no pool.
    pub fn in_rotation(&self, id: usize) -> bool {
        self.lock()
            .members
            .get(id)
            .is_some_and(|m| m.admin == Admin::Active)
    }

    /// Requests in flight on backend `id` now.
    pub fn in_flight(&self, id: usize) -> usize {
        self.load.get(id).map_or(0, |l| l.load(Ordering::SeqCst))
    }

    /// Every backend as the status page shows it, now.
    pub fn view(&self) -> Vec<BackendView> {
        let state = self.lock();
        state
            .members
            .iter()
            .zip(&self.backends)
            .zip(&self.load)
            .map(|((m, b), load)| BackendView {
                address: b.authority(),
                weight: m.weight,
                backup: m.backup,
                admin: m.admin,
                active: load.load(Ordering::SeqCst),
                health: m.health.clone(),
            })
            .collect()
    }

    /// Counts a request in flight off backend `id` (a `Lease` dropped), and says so when
    /// that was the last one on a backend being drained.
    fn finished(&self, id: usize) {
        let Some(load) = self.load.get(id) else {
            return;
        };
        let before = load.fetch_sub(1, Ordering::SeqCst);
        if before == 1
            && self
                .lock()
                .members
                .get(id)
                .is_some_and(|m| m.admin == Admin::Draining)
        {
            log::info!(
                "backend {} drained: its last request in flight has finished",
                self.backends[id]
            );
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A poisoned lock only means another thread panicked while holding it; the
        // integers and strings inside are still valid.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// One attempt on a backend, counted as a request in flight there until dropped.
#[derive(Debug)]
pub struct Lease {
    balancer: Arc<Balancer>,
    id: usize,
}

impl Lease {
    /// Counts an attempt on backend `id` as in flight.
    fn take(balancer: &Arc<Balancer>, id: usize) -> Lease {
        if let Some(load) = balancer.load.get(id) {
            load.fetch_add(1, Ordering::SeqCst);
        }
        Lease {
            balancer: Arc::clone(balancer),
            id,
        }
    }

    /// The backend it is on.
    pub fn id(&self) -> usize {
        self.id
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.balancer.finished(self.id);
    }
}

/// The backends one request may try, in order: an iterator of leases, each taken when the
/// attempt is about to begin (the first one at the choice).
#[derive(Debug)]
pub struct Plan {
    balancer: Arc<Balancer>,
    first: Option<Lease>,
    rest: std::vec::IntoIter<usize>,
}

impl Iterator for Plan {
    type Item = Lease;

    fn next(&mut self) -> Option<Lease> {
        self.first
            .take()
            .or_else(|| self.rest.next().map(|id| Lease::take(&self.balancer, id)))
    }
}

/// Every index of a ring of `len`, once each, starting at `start`.
pub fn rotation(start: usize, len: usize) -> impl Iterator<Item = usize> + Clone {
    (0..len).map(move |i| (start + i) % len)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backends(n: u16) -> Vec<Backend> {
        (1..=n)
            .map(|port| format!("127.0.0.1:{port}").parse().unwrap())
            .collect()
    }

    fn balancer(n: u16, balance: Balance) -> Arc<Balancer> {
        Arc::new(Balancer::new(backends(n), balance, POLICY))
    }

    const AFFINITY: Affinity<'static> = Affinity {
        client: IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
        uri: "/",
    };

    /// The backends a plan lists, in order (each lease dropped at once).
    fn ids(plan: Plan) -> Vec<usize> {
        plan.map(|lease| lease.id()).collect()
    }

    /// The first backend of the next plan.
    fn first(b: &Arc<Balancer>, now: Instant) -> usize {
        ids(b.plan(now, &AFFINITY))[0]
    }

    const POLICY: HealthPolicy = HealthPolicy {
        max_fails: 2,
        fail_timeout: Duration::from_secs(10),
    };

    #[test]
    fn rotation_visits_every_backend_once_starting_anywhere() {
        assert_eq!(rotation(0, 3).collect::<Vec<_>>(), [0, 1, 2]);
        assert_eq!(rotation(2, 3).collect::<Vec<_>>(), [2, 0, 1]);
        assert_eq!(rotation(0, 0).count(), 0);
    }

    #[test]
    fn successive_requests_start_at_successive_backends() {
        let b = balancer(3, Balance::RoundRobin);
        let now = Instant::now();
        let firsts: Vec<usize> = (0..7).map(|_| first(&b, now)).collect();
        assert_eq!(firsts, [0, 1, 2, 0, 1, 2, 0]);
        assert_eq!(ids(b.plan(now, &AFFINITY)), [1, 2, 0]);
    }

    #[test]
    fn a_backend_is_down_after_max_fails_in_a_row_until_fail_timeout() {
        let now = Instant::now();
        let mut h = Health::default();
        assert!(!h.record_failure(POLICY, now, "refused"));
        assert!(!h.is_down(now));
        assert!(h.record_failure(POLICY, now, "refused"));
        assert!(h.is_down(now + Duration::from_secs(9)));
        assert!(!h.is_down(now + Duration::from_secs(10)));
        assert_eq!(h.reason.as_deref(), Some("refused"));
        assert!(h.record_success());
        assert_eq!(h, Health::default());
    }

    #[test]
    fn a_success_resets_the_count_of_failures_in_a_row() {
        let now = Instant::now();
        let mut h = Health::default();
        h.record_failure(POLICY, now, "timeout");
        assert!(!h.record_success());
        assert!(!h.record_failure(POLICY, now, "timeout"));
        assert!(!h.is_down(now));
    }

    #[test]
    fn max_fails_zero_never_marks_down() {
        let policy = HealthPolicy {
            max_fails: 0,
            ..POLICY
        };
        let now = Instant::now();
        let mut h = Health::default();
        for _ in 0..100 {
            assert!(!h.record_failure(policy, now, "x"));
        }
        assert!(!h.is_down(now));
    }

    #[test]
    fn down_backends_are_skipped_and_the_rest_share_evenly() {
        let b = balancer(3, Balance::RoundRobin);
        let now = Instant::now();
        b.record_failure(1, now, "refused");
        assert!(b.record_failure(1, now, "refused"));
        let firsts: Vec<usize> = (0..6).map(|_| first(&b, now)).collect();
        assert_eq!(firsts, [0, 2, 0, 2, 0, 2]);
        let later = now + Duration::from_secs(11);
        assert_eq!(
            ids(b.plan(later, &AFFINITY)).len(),
            3,
            "back in the rotation after fail_timeout"
        );
    }

    #[test]
    fn when_every_backend_is_down_all_are_still_tried() {
        let now = Instant::now();
        let b = balancer(2, Balance::RoundRobin);
        assert_eq!(first(&b, now), 0);
        for id in [0, 0, 1, 1] {
            b.record_failure(id, now, "refused");
        }
        assert_eq!(ids(b.plan(now, &AFFINITY)), [1, 0]);
    }

    #[test]
    fn a_failed_probe_holds_a_backend_down_until_a_probe_succeeds() {
        let now = Instant::now();
        let mut h = Health::default();
        assert!(h.record_probe(false, now, "503"));
        assert!(h.is_down(now + Duration::from_secs(3600)));
        assert!(
            !h.record_probe(false, now, "503"),
            "no change, nothing to log"
        );
        assert!(h.record_probe(true, now, ""));
        assert!(!h.is_down(now));
        // A good probe also lifts a passive mark.
        h.record_failure(POLICY, now, "x");
        h.record_failure(POLICY, now, "x");
        assert!(h.is_down(now));
        assert!(h.record_probe(true, now, ""));
    }

    #[test]
    fn no_backends_means_nothing_to_try() {
        let b = Arc::new(Balancer::new(Vec::new(), Balance::RoundRobin, POLICY));
        assert!(ids(b.plan(Instant::now(), &AFFINITY)).is_empty());
        assert!(!b.record_failure(3, Instant::now(), "no such backend"));
    }

    #[test]
    fn concurrent_requests_spread_evenly() {
        let b = balancer(3, Balance::RoundRobin);
        let now = Instant::now();
        let mut counts = [0usize; 3];
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..6)
                .map(|_| s.spawn(|| (0..300).map(|_| first(&b, now)).collect::<Vec<_>>()))
                .collect();
            for h in handles {
                for id in h.join().unwrap() {
                    counts[id] += 1;
                }
            }
        });
        assert_eq!(counts, [600, 600, 600]);
    }

    #[test]
    fn a_lease_counts_in_flight_until_dropped_and_least_conn_avoids_it() {
        let b = balancer(3, Balance::LeastConn);
        let now = Instant::now();
        let mut plan = b.plan(now, &AFFINITY);
        let busy = plan.next().unwrap();
        assert_eq!(busy.id(), 0);
        drop(plan);
        let active = |b: &Balancer| b.view().iter().map(|v| v.active).collect::<Vec<_>>();
        assert_eq!(active(&b), [1, 0, 0], "the rest of the plan holds nothing");
        let firsts: Vec<usize> = (0..6).map(|_| first(&b, now)).collect();
        assert_eq!(firsts, [1, 2, 1, 2, 1, 2]);
        drop(busy);
        assert_eq!(active(&b), [0, 0, 0]);
        assert!((0..3).map(|_| first(&b, now)).any(|id| id == 0));
    }

    #[test]
    fn requests_choosing_at_once_see_each_others_load() {
        let b = balancer(3, Balance::LeastConn);
        let now = Instant::now();
        let held: Vec<Lease> = (0..6)
            .map(|_| b.plan(now, &AFFINITY).next().unwrap())
            .collect();
        let mut per_backend = [0; 3];
        for lease in &held {
            per_backend[lease.id()] += 1;
        }
        assert_eq!(per_backend, [2, 2, 2]);
    }

    #[test]
    fn drained_and_disabled_backends_get_nothing_and_show_their_state() {
        let b = balancer(3, Balance::RoundRobin);
        let now = Instant::now();
        let in_flight = b.plan(now, &AFFINITY).next().unwrap();
        assert_eq!(in_flight.id(), 0);
        assert_eq!(b.set_admin(0, Admin::Draining), Some(Admin::Active));
        assert_eq!(b.set_admin(2, Admin::Disabled), Some(Admin::Active));
        assert!(!b.in_rotation(0) && b.in_rotation(1));
        let firsts: Vec<usize> = (0..4).map(|_| first(&b, now)).collect();
        assert_eq!(firsts, [1, 1, 1, 1]);
        let states = |b: &Balancer| b.view().iter().map(|v| v.state(now)).collect::<Vec<_>>();
        assert_eq!(states(&b), ["draining", "up", "disabled"]);
        drop(in_flight);
        assert_eq!(states(&b), ["disabled", "up", "disabled"], "drained");
        b.set_admin(0, Admin::Active);
        b.set_admin(1, Admin::Disabled);
        b.set_admin(2, Admin::Disabled);
        assert_eq!(first(&b, now), 0, "enabled again");
        b.set_admin(0, Admin::Disabled);
        assert!(ids(b.plan(now, &AFFINITY)).is_empty());
        assert_eq!(b.set_admin(9, Admin::Active), None);
    }

    #[test]
    fn a_weight_set_at_run_time_changes_the_shares() {
        let b = balancer(2, Balance::RoundRobin);
        assert_eq!(b.set_weight(1, 4), Some(1));
        let now = Instant::now();
        let turns: Vec<usize> = (0..10).map(|_| first(&b, now)).collect();
        assert_eq!(turns.iter().filter(|&&id| id == 1).count(), 8);
        assert_eq!(b.view()[1].weight, 4);
    }

    #[test]
    fn ip_hash_keys_on_the_address_and_uri_hash_on_the_path() {
        let now = Instant::now();
        let by_ip = balancer(3, Balance::IpHash);
        let by_uri = balancer(3, Balance::UriHash);
        let mut ip_owners = std::collections::HashSet::new();
        for last in 1..=40u8 {
            let client = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, last));
            let owner = |uri| ids(by_ip.plan(now, &Affinity { client, uri }))[0];
            assert_eq!(owner("/a"), owner("/b"), "one address, one backend");
            ip_owners.insert(owner("/a"));
        }
        assert_eq!(ip_owners.len(), 3);
        let mapped: IpAddr = "::ffff:127.0.0.9".parse().unwrap();
        let plain: IpAddr = "127.0.0.9".parse().unwrap();
        let owner = |client| ids(by_ip.plan(now, &Affinity { client, uri: "/" }))[0];
        assert_eq!(owner(mapped), owner(plain));
        let uri_owner = |client, uri| ids(by_uri.plan(now, &Affinity { client, uri }))[0];
        assert_eq!(uri_owner(plain, "/x?y=1"), uri_owner(mapped, "/x?y=1"));
    }

    #[test]
    fn random_two_draws_differ_and_spread() {
        let b = balancer(3, Balance::RandomTwo);
        let now = Instant::now();
        let mut counts = [0; 3];
        for _ in 0..3000 {
            counts[first(&b, now)] += 1;
        }
        for count in counts {
            assert!((700..=1300).contains(&count), "{counts:?}");
        }
    }
}
