//! Round robin over the configured backends, skipping the ones that are down.
//!
//! One `Mutex` guards the rotation index and each backend's health. A request asks for its
//! `plan`, the order in which to try backends, and then reports how each attempt went.
//! Passive health checking (as nginx's `max_fails` / `fail_timeout`): `max_fails` failures
//! in a row mark a backend down for `fail_timeout`, after which it gets traffic again; one
//! success clears its count. When every backend is down, the plan still lists them all, so
//! the proxy tries rather than failing without trying.
//!
//! Connecting and deciding what counts as a failure is `proxy`'s job; this module only keeps
//! the score. The decisions themselves are pure functions taking `now` (`plan`,
//! `Health::record_failure`), so they are tested without threads, sockets or sleeping.

use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::proxy::config::Backend;

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

/// The backends, the rotation index and their health.
#[derive(Debug)]
pub struct Balancer {
    backends: Vec<Backend>,
    policy: HealthPolicy,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// Invariant: `< backends.len()` when there is at least one backend.
    next: usize,
    /// Invariant: one entry per backend, same order.
    health: Vec<Health>,
}

impl Balancer {
    /// A balancer that starts with the first backend, all of them up.
    pub fn new(backends: Vec<Backend>, policy: HealthPolicy) -> Self {
        let health = vec![Health::default(); backends.len()];
        Balancer {
            backends,
            policy,
            state: Mutex::new(State { next: 0, health }),
        }
    }

    /// The backends, in configuration order; indexes into this are backend ids.
    pub fn backends(&self) -> &[Backend] {
        &self.backends
    }

    /// The order in which one request tries the backends (ids), each at most once, and
    /// advances the rotation past the first of them.
    pub fn plan(&self, now: Instant) -> Vec<usize> {
        let mut state = self.lock();
        let order = plan(state.next, &state.health, now);
        if let Some(&first) = order.first() {
            state.next = (first + 1) % self.backends.len();
        }
        order
    }

    /// Records a failed attempt on backend `id`. Returns true when it is now marked down.
    pub fn record_failure(&self, id: usize, now: Instant, why: &str) -> bool {
        let policy = self.policy;
        self.lock()
            .health
            .get_mut(id)
            .is_some_and(|h| h.record_failure(policy, now, why))
    }

    /// Records a successful exchange with backend `id`. Returns true when it was down.
    pub fn record_success(&self, id: usize) -> bool {
        self.lock()
            .health
            .get_mut(id)
            .is_some_and(Health::record_success)
    }

    /// Records an active health check of backend `id`; returns true when its state changed.
    pub fn record_probe(&self, id: usize, ok: bool, now: Instant, why: &str) -> bool {
        self.lock()
            .health
            .get_mut(id)
            .is_some_and(|h| h.record_probe(ok, now, why))
    }

    /// A copy of every backend's health, for logs and status pages.
    pub fn health(&self) -> Vec<Health> {
        self.lock().health.clone()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A poisoned lock only means another thread panicked while holding it; the
        // integers and strings inside are still valid.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The plan for one request: starting at `start` in the ring, every backend that is up at
/// `now`; if none is, every backend (trying a down backend beats failing without trying).
pub fn plan(start: usize, health: &[Health], now: Instant) -> Vec<usize> {
    let ring = rotation(start, health.len());
    let up: Vec<usize> = ring.clone().filter(|&i| !health[i].is_down(now)).collect();
    if up.is_empty() {
        ring.collect()
    } else {
        up
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
            .map(|port| Backend {
                host: "127.0.0.1".to_string(),
                port,
            })
            .collect()
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
        let b = Balancer::new(backends(3), POLICY);
        let now = Instant::now();
        let firsts: Vec<usize> = (0..7).map(|_| b.plan(now)[0]).collect();
        assert_eq!(firsts, [0, 1, 2, 0, 1, 2, 0]);
        assert_eq!(b.plan(now), [1, 2, 0]);
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
        let b = Balancer::new(backends(3), POLICY);
        let now = Instant::now();
        b.record_failure(1, now, "refused");
        assert!(b.record_failure(1, now, "refused"));
        let firsts: Vec<usize> = (0..6).map(|_| b.plan(now)[0]).collect();
        assert_eq!(firsts, [0, 2, 0, 2, 0, 2]);
        let later = now + Duration::from_secs(11);
        assert_eq!(
            b.plan(later).len(),
            3,
            "back in the rotation after fail_timeout"
        );
    }

    #[test]
    fn when_every_backend_is_down_all_are_still_tried() {
        let now = Instant::now();
        let down = Health {
            fails: 5,
            down_until: Some(now + Duration::from_secs(5)),
            reason: None,
            probe_down: false,
            down_since: None,
        };
        let health = vec![down.clone(), down];
        assert_eq!(plan(1, &health, now), [1, 0]);
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
        let b = Balancer::new(Vec::new(), POLICY);
        assert!(b.plan(Instant::now()).is_empty());
        assert!(!b.record_failure(3, Instant::now(), "no such backend"));
    }

    #[test]
    fn concurrent_requests_spread_evenly() {
        let b = Balancer::new(backends(3), POLICY);
        let now = Instant::now();
        let mut counts = [0usize; 3];
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..6)
                .map(|_| s.spawn(|| (0..300).map(|_| b.plan(now)[0]).collect::<Vec<_>>()))
                .collect();
            for h in handles {
                for id in h.join().unwrap() {
                    counts[id] += 1;
                }
            }
        });
        assert_eq!(counts, [600, 600, 600]);
    }
}
