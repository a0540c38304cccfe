//! Request coalescing: when many clients ask at once for the same URI that the cache cannot
//! answer, one of them (the leader) goes to the backend and the others (followers) wait
//! for it, then look in the cache again. Without this, a popular page expiring sends a burst
//! of identical requests to the backend (the "thundering herd"); ATS calls its version
//! read-while-writer, httpd's mod_cache a "thundering herd lock" (`CacheLock`).
//!
//! A flight is keyed by the primary cache key. It ends when the leader's `FlightGuard` is
//! dropped, normally right after the new entry is committed, or as soon as the leader knows
//! it will store nothing, so followers never wait for a body that will not be cached. A
//! follower waits at most the time it is given (the proxy passes `upstream_timeout`), then
//! carries on without the leader. This module decides nothing about HTTP.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Duration;

/// The flights in progress, by key.
#[derive(Debug, Default)]
pub struct InFlight {
    /// Invariant: a key is present exactly while its leader's guard is alive.
    flights: Mutex<HashMap<String, Arc<Flight>>>,
}

/// One fetch in progress, that followers can wait on.
#[derive(Debug, Default)]
pub struct Flight {
    done: Mutex<bool>,
    finished: Condvar,
}

/// What a request becomes when it joins the flight for a key.
#[derive(Debug)]
pub enum Role<'a> {
    /// Nobody was fetching this key: go to the backend; the flight ends when the guard drops.
    Leader(FlightGuard<'a>),
    /// Someone is: wait on the flight, then look in the cache again.
    Follower(Arc<Flight>),
}

/// Held by the leader; dropping it ends the flight and wakes every follower.
#[derive(Debug)]
pub struct FlightGuard<'a> {
    in_flight: &'a InFlight,
    key: String,
    flight: Arc<Flight>,
}

impl InFlight {
    /// No flights.
    pub fn new() -> Self {
        InFlight::default()
    }

    /// Leads the flight for `key` if there is none, else follows the existing one.
    pub fn join(&self, key: &str) -> Role<'_> {
        let mut flights = self.flights.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(flight) = flights.get(key) {
            return Role::Follower(Arc::clone(flight));
        }
        let flight = Arc::new(Flight::default());
        flights.insert(key.to_string(), Arc::clone(&flight));
        Role::Leader(FlightGuard {
            in_flight: self,
            key: key.to_string(),
            flight,
        })
    }

    /// How many flights are in progress.
    pub fn len(&self) -> usize {
        self.flights
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Whether no flight is in progress.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Flight {
    /// Waits until the flight ends or `timeout` passes; returns whether it ended.
    pub fn wait(&self, timeout: Duration) -> bool {
        let done = self.done.lock().unwrap_or_else(PoisonError::into_inner);
        let (done, _) = self
            .finished
            .wait_timeout_while(done, timeout, |done| !*done)
            .unwrap_or_else(PoisonError::into_inner);
        *done
    }
}

impl Drop for FlightGuard<'_> {
    fn drop(&mut self) {
        let mut flights = self
            .in_flight
            .flights
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if flights
            .get(&self.key)
            .is_some_and(|f| Arc::ptr_eq(f, &self.flight))
        {
            flights.remove(&self.key);
        }
        drop(flights);
        *self
            .flight
            .done
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = true;
        self.flight.finished.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::thread;

    use super::*;

    #[test]
    fn one_leader_per_key() {
        let f = InFlight::new();
        let a = f.join("a");
        assert!(matches!(a, Role::Leader(_)));
        assert!(matches!(f.join("a"), Role::Follower(_)));
        assert!(matches!(f.join("b"), Role::Leader(_)));
        assert_eq!(f.len(), 1, "b's guard was dropped at once");
        drop(a);
        assert!(f.is_empty());
        assert!(matches!(f.join("a"), Role::Leader(_)));
    }

    #[test]
    fn followers_wake_when_the_leader_is_done() {
        let f = InFlight::new();
        let leaders = AtomicUsize::new(0);
        let woken = AtomicUsize::new(0);
        let guard = f.join("k");
        thread::scope(|s| {
            let mut followers = Vec::new();
            for _ in 0..8 {
                match f.join("k") {
                    Role::Leader(_) => {
                        leaders.fetch_add(1, Ordering::SeqCst);
                    }
                    Role::Follower(flight) => followers.push(flight),
                }
            }
            for flight in followers {
                let woken = &woken;
                s.spawn(move || {
                    if flight.wait(Duration::from_secs(20)) {
                        woken.fetch_add(1, Ordering::SeqCst);
                    }
                });
            }
            drop(guard);
        });
        assert_eq!(leaders.load(Ordering::SeqCst), 0);
        assert_eq!(woken.load(Ordering::SeqCst), 8);
    }

    #[test]
    fn a_follower_gives_up_after_its_timeout() {
        let f = InFlight::new();
        let _leader = f.join("k");
        let Role::Follower(flight) = f.join("k") else {
            panic!("expected a follower")
        };
        assert!(!flight.wait(Duration::from_millis(1)));
    }
}
