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
//!
//! Followers need not wait for the whole body: once the leader has begun storing its
//! response, it publishes the entry (`Growing`) and how far it is (`Progress`), and followers
//! read the file as it grows. The leader fills it at the backend's pace, whatever its own
//! client's (see the proxy's relay step), so no follower is held to the slowest client.
//!
//! `PassMarks` remembers, for a while, the URIs whose responses could not be stored, so that
//! requests for them are not made to wait for each other in the first place.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::http::Response;

/// The flights in progress, by key.
#[derive(Debug, Default)]
pub struct InFlight {
    /// Invariant: a key is present exactly while its leader's guard is alive.
    flights: Mutex<HashMap<String, Arc<Flight>>>,
}

/// One fetch in progress, that followers can wait on, and read as it is stored.
#[derive(Debug, Default)]
pub struct Flight {
    state: Mutex<FlightState>,
    /// Notified when the flight ends and whenever its entry grows.
    changed: Condvar,
}

#[derive(Debug, Default)]
struct FlightState {
    /// The leader's guard is gone.
    done: bool,
    /// The entry the leader is writing, once it has begun one.
    growing: Option<Arc<Growing>>,
    /// How far that entry is.
    fill: Progress,
}

/// An entry being written by a flight's leader: followers read its file as it grows (ATS's
/// read-while-writer), so they get the response at the backend's pace, not after it.
#[derive(Clone, Debug)]
pub struct Growing {
    /// The key the entry is stored under (its variant's): a follower whose request selects
    /// another variant does not read it.
    pub key: String,
    /// The file being written. Readers open it while the flight lasts; once the entry is
    /// committed it is renamed, and an open file goes on reading the same bytes.
    pub path: PathBuf,
    /// The stored head, as written at the start of the file.
    pub head: Response,
    /// Where the body starts in the file.
    pub body_start: u64,
}

/// How far a growing entry's body is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    /// Being written; this many body bytes can be read from the file.
    Writing(u64),
    /// Complete, with this many body bytes.
    Complete(u64),
    /// Given up: what was read of it is all there will be.
    Failed,
}

impl Default for Progress {
    fn default() -> Self {
        Progress::Writing(0)
    }
}

/// What a follower's wait for a flight ends with.
#[derive(Debug)]
pub enum Waited {
    /// The leader is storing its response: read it as it grows.
    Growing(Arc<Growing>),
    /// The flight ended (the entry committed, or nothing stored): look in the cache again.
    Ended,
    /// Neither happened in time.
    TimedOut,
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

    /// Whether a flight for `key` is in progress (a fetch of it is under way).
    pub fn is_flying(&self, key: &str) -> bool {
        self.flights
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains_key(key)
    }

    /// How many flights are in progress.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.flights
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Whether no flight is in progress.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Flight {
    /// Waits until the flight ends or `timeout` passes; returns whether it ended.
    pub fn wait(&self, timeout: Duration) -> bool {
        let state = self.lock();
        let (state, _) = self
            .changed
            .wait_timeout_while(state, timeout, |state| !state.done)
            .unwrap_or_else(PoisonError::into_inner);
        state.done
    }

    /// Waits until the leader has begun storing its response, or the flight ends, or
    /// `timeout` passes.
    pub fn wait_for_entry(&self, timeout: Duration) -> Waited {
        let state = self.lock();
        let (state, _) = self
            .changed
            .wait_timeout_while(state, timeout, |s| !s.done && s.growing.is_none())
            .unwrap_or_else(PoisonError::into_inner);
        match (&state.growing, state.fill, state.done) {
            (Some(growing), Progress::Writing(_), _) => Waited::Growing(Arc::clone(growing)),
            (_, _, true) | (Some(_), _, false) => Waited::Ended,
            (None, _, false) => Waited::TimedOut,
        }
    }

    /// Waits until the growing entry has more than `read` body bytes, is complete or has
    /// failed, or `timeout` passes; returns how far it is then.
    pub fn wait_for_bytes(&self, read: u64, timeout: Duration) -> Progress {
        let state = self.lock();
        let (state, _) = self
            .changed
            .wait_timeout_while(
                state,
                timeout,
                |s| matches!(s.fill, Progress::Writing(n) if n <= read),
            )
            .unwrap_or_else(PoisonError::into_inner);
        state.fill
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FlightState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn update(&self, change: impl FnOnce(&mut FlightState)) {
        change(&mut self.lock());
        self.changed.notify_all();
    }
}

impl FlightGuard<'_> {
    /// The leader has begun storing its response in `growing`: followers may read it.
    pub fn publish(&self, growing: Growing) {
        self.flight.update(|s| {
            s.growing = Some(Arc::new(growing));
            s.fill = Progress::Writing(0);
        });
    }

    /// `written` body bytes of the published entry are in its file.
    pub fn advance(&self, written: u64) {
        self.flight.update(|s| s.fill = Progress::Writing(written));
    }

    /// The published entry is complete, with `total` body bytes.
    pub fn complete(&self, total: u64) {
        self.flight.update(|s| s.fill = Progress::Complete(total));
    }

    /// The published entry was given up.
    pub fn fail(&self) {
        self.flight.update(|s| s.fill = Progress::Failed);
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
        self.flight.update(|s| {
            s.done = true;
            // A leader gone without saying the entry was complete has given it up.
            if matches!(s.fill, Progress::Writing(_)) && s.growing.is_some() {
                s.fill = Progress::Failed;
            }
        });
    }
}

/// How long a URI whose response could not be stored goes straight to the backends,
/// without coalescing (Varnish's built-in rules keep such a "hit-for-pass" mark 120 s).
pub const HIT_FOR_PASS: Duration = Duration::from_secs(120);
/// Most URIs marked at once; past it, expired marks are dropped, and if none has expired
/// new marks are not taken (requests for that URI are then coalesced as usual).
pub const MAX_PASS_MARKS: usize = 10_000;

/// URIs known to be uncacheable, for a while ("hit-for-pass", as Varnish calls it).
///
/// Coalescing makes requests wait for the one in flight so they can share its response. When
/// that response turns out not to be storable (`private`, `no-store`, a Set-Cookie page), the
/// wait was for nothing: five clients of a 2 s private page take 2, 4, 4, 4 and 4 s. So the
/// URI is marked for `HIT_FOR_PASS`, and requests for it go to the backends at once, side by
/// side. A response that turns out storable again clears the mark (and is stored as usual).
#[derive(Debug, Default)]
pub struct PassMarks {
    /// Invariant: at most `MAX_PASS_MARKS` entries; each value is when its mark ends.
    marks: Mutex<HashMap<String, Instant>>,
}

impl PassMarks {
    /// No marks.
    pub fn new() -> Self {
        PassMarks::default()
    }

    /// Marks `key` uncacheable until `now + HIT_FOR_PASS`.
    pub fn mark(&self, key: &str, now: Instant) {
        let mut marks = self.lock();
        if marks.len() >= MAX_PASS_MARKS && !marks.contains_key(key) {
            marks.retain(|_, until| *until > now);
            if marks.len() >= MAX_PASS_MARKS {
                return;
            }
        }
        marks.insert(key.to_string(), now + HIT_FOR_PASS);
    }

    /// Whether `key` is marked at `now`.
    pub fn is_marked(&self, key: &str, now: Instant) -> bool {
        self.lock().get(key).is_some_and(|until| *until > now)
    }

    /// Removes the mark of `key`, if any.
    pub fn clear(&self, key: &str) {
        self.lock().remove(key);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Instant>> {
        self.marks.lock().unwrap_or_else(PoisonError::into_inner)
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
    fn pass_marks_last_hit_for_pass_and_can_be_cleared() {
        let marks = PassMarks::new();
        let now = Instant::now();
        assert!(!marks.is_marked("k", now));
        marks.mark("k", now);
        assert!(marks.is_marked("k", now + HIT_FOR_PASS - Duration::from_secs(1)));
        assert!(!marks.is_marked("k", now + HIT_FOR_PASS));
        marks.clear("k");
        assert!(!marks.is_marked("k", now));
    }

    #[test]
    fn pass_marks_are_bounded_and_expired_ones_make_room() {
        let marks = PassMarks::new();
        let now = Instant::now();
        for i in 0..MAX_PASS_MARKS {
            marks.mark(&i.to_string(), now);
        }
        marks.mark("one more", now + Duration::from_secs(1));
        assert!(!marks.is_marked("one more", now + Duration::from_secs(1)));
        let later = now + HIT_FOR_PASS;
        marks.mark("one more", later);
        assert!(marks.is_marked("one more", later));
        assert_eq!(marks.lock().len(), 1, "the expired marks were dropped");
    }

    fn growing() -> Growing {
        Growing {
            key: "k".to_string(),
            path: PathBuf::from("/nowhere"),
            head: Response::new(200),
            body_start: 40,
        }
    }

    #[test]
    fn followers_see_the_entry_as_it_grows_then_complete() {
        let f = InFlight::new();
        let Role::Leader(guard) = f.join("k") else {
            panic!("expected to lead")
        };
        let Role::Follower(flight) = f.join("k") else {
            panic!("expected to follow")
        };
        assert!(matches!(
            flight.wait_for_entry(Duration::ZERO),
            Waited::TimedOut
        ));
        guard.publish(growing());
        guard.advance(10);
        let (ready_tx, ready) = std::sync::mpsc::channel();
        thread::scope(|s| {
            let reader = s.spawn(|| {
                let Waited::Growing(entry) = flight.wait_for_entry(Duration::from_secs(20)) else {
                    panic!("no entry")
                };
                assert_eq!(entry.body_start, 40);
                ready_tx.send(()).unwrap();
                let mut seen = vec![];
                let mut read = 0;
                loop {
                    match flight.wait_for_bytes(read, Duration::from_secs(20)) {
                        Progress::Writing(n) => {
                            seen.push(n);
                            read = n;
                        }
                        Progress::Complete(n) => return (seen, n),
                        Progress::Failed => panic!("failed"),
                    }
                }
            });
            ready.recv().unwrap();
            for n in [20, 30] {
                guard.advance(n);
            }
            guard.complete(30);
            let (seen, total) = reader.join().unwrap();
            assert_eq!(total, 30);
            assert!(seen.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
        });
        drop(guard);
        assert!(matches!(
            flight.wait_for_entry(Duration::ZERO),
            Waited::Ended
        ));
    }

    #[test]
    fn a_leader_gone_without_completing_leaves_a_failed_entry() {
        let f = InFlight::new();
        let Role::Leader(guard) = f.join("k") else {
            panic!("expected to lead")
        };
        let Role::Follower(flight) = f.join("k") else {
            panic!("expected to follow")
        };
        guard.publish(growing());
        guard.advance(5);
        drop(guard);
        assert_eq!(flight.wait_for_bytes(5, Duration::ZERO), Progress::Failed);
        assert!(matches!(
            flight.wait_for_entry(Duration::ZERO),
            Waited::Ended
        ));
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
