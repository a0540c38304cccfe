//! Round robin over the configured backends: a `Mutex`-guarded index that each request
//! advances by one.
//!
//! The balancer only says in which order to try the backends; connecting to them, and
//! deciding that one failed, is `upstream`'s and `proxy`'s job. The order itself is a pure
//! function (`rotation`), so it is tested without threads or sockets.

use std::sync::Mutex;

use crate::config::Backend;

/// The backends and the shared round-robin position.
#[derive(Debug)]
pub struct Balancer {
    backends: Vec<Backend>,
    /// Invariant: always `< backends.len()` when there is at least one backend.
    next: Mutex<usize>,
}

impl Balancer {
    /// A balancer that starts with the first backend.
    pub fn new(backends: Vec<Backend>) -> Self {
        Balancer {
            backends,
            next: Mutex::new(0),
        }
    }

    /// The backends, in configuration order.
    pub fn backends(&self) -> &[Backend] {
        &self.backends
    }

    /// The order in which one request tries the backends: the next one in the rotation
    /// first, then the ones after it, each at most once. Advances the rotation by one.
    pub fn order(&self) -> impl Iterator<Item = &Backend> {
        let start = {
            // A poisoned lock only means another thread panicked while holding a plain
            // integer; the integer is still valid.
            let mut next = self.next.lock().unwrap_or_else(|p| p.into_inner());
            let start = *next;
            *next = advance(start, self.backends.len());
            start
        };
        rotation(start, self.backends.len()).map(|i| &self.backends[i])
    }
}

/// The position after `current` in a ring of `len` backends.
pub fn advance(current: usize, len: usize) -> usize {
    if len == 0 {
        0
    } else {
        (current + 1) % len
    }
}

/// Every index of a ring of `len`, once each, starting at `start`.
pub fn rotation(start: usize, len: usize) -> impl Iterator<Item = usize> {
    (0..len).map(move |i| (start + i) % len)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backend(port: u16) -> Backend {
        Backend {
            host: "127.0.0.1".to_string(),
            port,
        }
    }

    #[test]
    fn rotation_visits_every_backend_once_starting_anywhere() {
        assert_eq!(rotation(0, 3).collect::<Vec<_>>(), [0, 1, 2]);
        assert_eq!(rotation(2, 3).collect::<Vec<_>>(), [2, 0, 1]);
        assert_eq!(rotation(0, 0).count(), 0);
    }

    #[test]
    fn successive_requests_start_at_successive_backends() {
        let b = Balancer::new(vec![backend(1), backend(2), backend(3)]);
        let firsts: Vec<u16> = (0..7).map(|_| b.order().next().unwrap().port).collect();
        assert_eq!(firsts, [1, 2, 3, 1, 2, 3, 1]);
        let fallback: Vec<u16> = b.order().map(|be| be.port).collect();
        assert_eq!(fallback, [2, 3, 1]);
    }

    #[test]
    fn no_backends_means_nothing_to_try() {
        let b = Balancer::new(Vec::new());
        assert_eq!(b.order().count(), 0);
        assert_eq!(advance(5, 0), 0);
    }

    #[test]
    fn concurrent_requests_spread_evenly() {
        let b = Balancer::new(vec![backend(1), backend(2), backend(3)]);
        let mut counts = [0usize; 3];
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..6)
                .map(|_| {
                    s.spawn(|| {
                        (0..300)
                            .map(|_| b.order().next().unwrap().port)
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            for h in handles {
                for port in h.join().unwrap() {
                    counts[usize::from(port) - 1] += 1;
                }
            }
        });
        assert_eq!(counts, [600, 600, 600]);
    }
}
