//! The connection slots: which client connections are open, what each one is doing, and
//! which one gives way when a new connection finds every slot taken.
//!
//! With one thread per connection, the `max_connections` slots are the scarce thing: a
//! client that holds one without using it (an idle keep-alive connection, a request head
//! sent a byte at a time) keeps everyone else out. Three rules spend them well:
//!
//! - **Reclaim before refusing.** When every slot is taken, the accept loop closes the
//!   connection that will be missed least (`choose_victim`) and serves the newcomer: first a
//!   request head that has been arriving for `RECLAIM_GRACE` or longer (a slow or hostile
//!   client), then the keep-alive connection idle longest between two requests (as nginx
//!   reuses its idle keep-alive connections), then a connection that has sent nothing at all
//!   for `RECLAIM_GRACE`. A connection serving a request is never reclaimed. Only when none
//!   qualifies does the newcomer get a 503.
//! - **Shorter waits under pressure.** Above `PRESSURE_PERCENT` of the slots, a connection
//!   waiting for a request head waits at most `PRESSURE_IDLE_WAIT` for its first byte and
//!   `PRESSURE_HEAD_TIMEOUT` from there to the end of the head (as HAProxy's
//!   `timeout http-keep-alive` and `timeout http-request`), instead of `client_timeout` for
//!   both together (`head_deadline`).
//! - **A cap per address** (`max_connections_per_ip`, off by default): one address cannot
//!   hold more slots than that; its next connection gets a 503.
//!
//! Each connection's phase is one atomic word, written by its own thread as it reads
//! (`ClientStream`) and read by the accept loop only when the slots are full. A reclaimed
//! connection's socket is shut down for reading: its thread's blocked read returns at once,
//! a connection waiting for a head ends quietly, a half-read head gets 408, and the thread
//! gives the slot back. The policy functions are pure, with time passed in; `Slots` applies
//! them under one lock, taken once when a connection opens and once when it closes.

use std::collections::HashMap;
use std::net::{IpAddr, Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// Above this percentage of `max_connections` open, the slots are under pressure and the
/// waits for a request head shrink.
pub const PRESSURE_PERCENT: usize = 75;
/// Under pressure: the longest wait for the first byte of a request head (a keep-alive
/// connection between requests, or a new connection), instead of `client_timeout`.
pub const PRESSURE_IDLE_WAIT: Duration = Duration::from_secs(2);
/// Under pressure: the longest a request head may take from its first byte to its end,
/// instead of what is left of `client_timeout`.
pub const PRESSURE_HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// A request head still arriving after this long, or a new connection silent this long, may
/// be closed to make room for a new connection when every slot is taken. Shorter waits are
/// protected: a client's first bytes are usually in flight. (A keep-alive connection between
/// two requests has no such grace: its client has nothing in progress.)
pub const RECLAIM_GRACE: Duration = Duration::from_secs(1);

/// What a connection is doing, as the accept loop sees it. Times are measured from the
/// slots' start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Serving a request, or in a handler that does not report its phases: never reclaimed.
    Busy,
    /// Accepted at this time, no byte received yet.
    New(Duration),
    /// A keep-alive connection waiting, since this time, for the next request's first byte.
    Idle(Duration),
    /// A request head has been arriving since this time (its first byte).
    Head(Duration),
}

/// Bits of a `Phase`'s word that hold which phase it is; the rest hold its time in µs.
const TAG_BITS: u32 = 2;

impl Phase {
    /// The phase as one word: the time in microseconds, shifted, and the phase's tag.
    fn to_bits(self) -> u64 {
        let (tag, at) = match self {
            Phase::Busy => (0, Duration::ZERO),
            Phase::New(at) => (1, at),
            Phase::Idle(at) => (2, at),
            Phase::Head(at) => (3, at),
        };
        let micros = u64::try_from(at.as_micros()).unwrap_or(u64::MAX);
        (micros.min(u64::MAX >> TAG_BITS) << TAG_BITS) | tag
    }

    fn from_bits(bits: u64) -> Phase {
        let at = Duration::from_micros(bits >> TAG_BITS);
        match bits & ((1 << TAG_BITS) - 1) {
            1 => Phase::New(at),
            2 => Phase::Idle(at),
            3 => Phase::Head(at),
            _ => Phase::Busy,
        }
    }
}

/// Whether `open` connections out of `max` put the slots under pressure.
pub fn under_pressure(open: usize, max: usize) -> bool {
    open.saturating_mul(100) > max.saturating_mul(PRESSURE_PERCENT)
}

/// By when a request head must have arrived whole, for a wait that began at `since` and
/// whose first byte came at `first_byte`: `client_timeout` after `since`, or under pressure
/// whichever comes first of that and the shortened limits.
pub fn head_deadline(
    since: Instant,
    first_byte: Option<Instant>,
    client_timeout: Duration,
    pressured: bool,
) -> Instant {
    let normal = since + client_timeout;
    if !pressured {
        return normal;
    }
    let short = match first_byte {
        None => since + PRESSURE_IDLE_WAIT,
        Some(at) => at + PRESSURE_HEAD_TIMEOUT,
    };
    normal.min(short)
}

/// Which connection to close so that a new one can be served, when every slot is taken and
/// it is `now`: see the module docs for the order. `None` when no connection may be closed.
pub fn choose_victim<K>(conns: impl IntoIterator<Item = (K, Phase)>, now: Duration) -> Option<K> {
    conns
        .into_iter()
        .filter_map(|(key, phase)| reclaim_rank(phase, now).map(|rank| (rank, key)))
        .min_by_key(|(rank, _)| *rank)
        .map(|(_, key)| key)
}

/// How readily a connection in `phase` gives way at `now`, lowest first (a class, then the
/// time its phase began: oldest first); `None` if it may not be closed.
fn reclaim_rank(phase: Phase, now: Duration) -> Option<(u8, Duration)> {
    let aged = |since: Duration| now.saturating_sub(since) >= RECLAIM_GRACE;
    match phase {
        Phase::Head(since) if aged(since) => Some((0, since)),
        Phase::Idle(since) => Some((1, since)),
        Phase::New(since) if aged(since) => Some((2, since)),
        Phase::Busy | Phase::Head(_) | Phase::New(_) => None,
    }
}

/// Why a new connection was not given a slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Every slot is taken and none could be reclaimed.
    Full,
    /// Its address already holds `max_connections_per_ip` slots.
    PerAddress,
}

/// The open connections, shared by the accept loop and the connection threads.
pub struct Slots {
    /// Connections served at once (`max_connections`).
    max: usize,
    /// Connections one address may hold; 0 for no cap.
    max_per_ip: usize,
    /// Each read's timeout on a client connection (`client_timeout`).
    client_timeout: Duration,
    /// The origin of every `Phase` time.
    epoch: Instant,
    /// Slots taken, reclaimed ones included until their thread gives them back (the status
    /// page shows it). Invariant: changed only with `table` locked, and equal to its length.
    active: Arc<AtomicUsize>,
    table: Mutex<Table>,
    /// Set when the server stops: a connection about to wait for another request ends
    /// instead (see `ClientStream::await_head`).
    stopping: AtomicBool,
    /// Whether the listener's read and write timeouts (`client_timeout`) and TCP_NODELAY
    /// are inherited by the sockets it accepts, so that none needs them set again.
    inherited: AtomicBool,
}

/// The open connections, by id.
#[derive(Default)]
struct Table {
    next_id: u64,
    conns: HashMap<u64, Arc<Conn>>,
    /// Open connections per client address. Invariant: no zero counts.
    per_ip: HashMap<IpAddr, usize>,
    /// Connections reclaimed whose thread has not yet given back the slot. They do not
    /// count against `max`: their threads are on their way out.
    reclaiming: usize,
}

/// One open connection, shared by its thread and the accept loop.
pub struct Conn {
    /// The client's socket; `ClientStream` reads and writes through it, the accept loop shuts
    /// it down to reclaim the slot.
    pub(super) stream: TcpStream,
    /// The `Phase`, as `Phase::to_bits`.
    phase: AtomicU64,
    /// Set once, when the accept loop closes the connection to make room.
    reclaimed: AtomicBool,
}

impl Conn {
    /// A connection that is not (yet) in any table: busy, not reclaimed.
    pub(super) fn new(stream: TcpStream) -> Conn {
        Conn {
            stream,
            phase: AtomicU64::new(Phase::Busy.to_bits()),
            reclaimed: AtomicBool::new(false),
        }
    }

    pub(super) fn set_phase(&self, phase: Phase) {
        self.phase.store(phase.to_bits(), Ordering::Release);
    }

    fn phase(&self) -> Phase {
        Phase::from_bits(self.phase.load(Ordering::Acquire))
    }

    /// Whether the accept loop has closed this connection to make room for another.
    pub(super) fn is_reclaimed(&self) -> bool {
        self.reclaimed.load(Ordering::Acquire)
    }
}

impl Slots {
    /// Room for `max` connections, at most `max_per_ip` from one address (0: no cap), each
    /// read on them bounded by `client_timeout`. `active` counts the slots taken.
    pub fn new(
        max: usize,
        max_per_ip: usize,
        client_timeout: Duration,
        active: Arc<AtomicUsize>,
    ) -> Arc<Slots> {
        Arc::new(Slots {
            max,
            max_per_ip,
            client_timeout,
            epoch: Instant::now(),
            active,
            table: Mutex::new(Table::default()),
            stopping: AtomicBool::new(false),
            inherited: AtomicBool::new(false),
        })
    }

    /// Notes that the listener carries the options every client socket needs, so that the
    /// accepted sockets inherit them (see `client_stream::set_on_listener`).
    pub(super) fn note_inherited_options(&self) {
        self.inherited.store(true, Ordering::Release);
    }

    /// Whether accepted sockets inherit their options from the listener.
    pub(super) fn options_inherited(&self) -> bool {
        self.inherited.load(Ordering::Acquire)
    }

    /// Stops the connections that are not in the middle of a request: those waiting for
    /// one (idle keep-alive connections, new ones that have sent nothing) are shut down for
    /// reading, so their threads end quietly, and those serving one end after it.
    pub(super) fn stop(&self) {
        self.stopping.store(true, Ordering::Release);
        let table = self.table();
        for conn in table.conns.values() {
            if matches!(conn.phase(), Phase::Idle(_) | Phase::New(_)) {
                let _ = conn.stream.shutdown(Shutdown::Read);
            }
        }
    }

    /// Whether the server is stopping.
    pub(super) fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    /// Connections open now.
    pub(super) fn open(&self) -> usize {
        self.active.load(Ordering::Acquire)
    }

    /// `at` as a `Phase` time.
    pub(super) fn since_start(&self, at: Instant) -> Duration {
        at.saturating_duration_since(self.epoch)
    }

    /// Whether the slots are under pressure now.
    pub(super) fn under_pressure(&self) -> bool {
        under_pressure(self.active.load(Ordering::Acquire), self.max)
    }

    pub(super) fn client_timeout(&self) -> Duration {
        self.client_timeout
    }

    /// Gives `stream`, from `peer`, a slot, closing another connection to make room when
    /// every slot is taken. The new connection starts `Busy` until its handler waits for a
    /// head.
    ///
    /// # Errors
    /// The stream back, with why it was refused.
    pub fn admit(
        self: &Arc<Self>,
        stream: TcpStream,
        peer: SocketAddr,
    ) -> Result<Slot, (TcpStream, Refusal)> {
        let ip = peer.ip().to_canonical();
        let mut table = self.table();
        let from_ip = table.per_ip.get(&ip).copied().unwrap_or(0);
        if self.max_per_ip > 0 && from_ip >= self.max_per_ip {
            return Err((stream, Refusal::PerAddress));
        }
        let open = self
            .active
            .load(Ordering::Acquire)
            .saturating_sub(table.reclaiming);
        let victim = if open >= self.max {
            match table.reclaim(self.since_start(Instant::now())) {
                Some(victim) => Some(victim),
                None => return Err((stream, Refusal::Full)),
            }
        } else {
            None
        };
        let id = table.next_id;
        table.next_id += 1;
        let conn = Arc::new(Conn::new(stream));
        table.conns.insert(id, Arc::clone(&conn));
        table.per_ip.insert(ip, from_ip + 1);
        self.active.fetch_add(1, Ordering::AcqRel);
        drop(table);
        if let Some(victim) = victim {
            log::debug!(
                "{peer}: all {} slots taken, closed an idle or slow one",
                self.max
            );
            // The victim's thread sees its read end and gives its slot back.
            let _ = victim.stream.shutdown(Shutdown::Read);
        }
        Ok(Slot {
            slots: Arc::clone(self),
            id,
            ip,
            conn,
        })
    }

    /// The table, locked. Each change to it completes under one lock, so it stays
    /// consistent even if a holder of the lock panicked.
    fn table(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Table {
    /// Picks a connection to close at `now` and marks it reclaimed; the caller shuts it down.
    fn reclaim(&mut self, now: Duration) -> Option<Arc<Conn>> {
        let candidates = self
            .conns
            .iter()
            .filter(|(_, conn)| !conn.is_reclaimed())
            .map(|(id, conn)| (*id, conn.phase()));
        let id = choose_victim(candidates, now)?;
        let victim = Arc::clone(self.conns.get(&id)?);
        victim.reclaimed.store(true, Ordering::Release);
        self.reclaiming += 1;
        Some(victim)
    }
}

/// One connection's slot, given back when dropped (also on unwinding).
pub struct Slot {
    slots: Arc<Slots>,
    id: u64,
    ip: IpAddr,
    conn: Arc<Conn>,
}

impl Slot {
    pub(super) fn conn(&self) -> &Arc<Conn> {
        &self.conn
    }

    pub(super) fn slots(&self) -> &Arc<Slots> {
        &self.slots
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut table = self.slots.table();
        table.conns.remove(&self.id);
        if let Some(count) = table.per_ip.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                table.per_ip.remove(&self.ip);
            }
        }
        if self.conn.is_reclaimed() {
            table.reclaiming = table.reclaiming.saturating_sub(1);
        }
        self.slots.active.fetch_sub(1, Ordering::AcqRel);
        // The socket itself closes after this, with the last `Arc<Conn>`: a client that sees
        // the close also sees the slot given back.
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn ms(m: u64) -> Duration {
        Duration::from_millis(m)
    }

    #[test]
    fn a_phase_survives_its_word() {
        for phase in [
            Phase::Busy,
            Phase::New(ms(1)),
            Phase::Idle(secs(86_400 * 365)),
            Phase::Head(Duration::from_micros(123_456_789)),
        ] {
            assert_eq!(Phase::from_bits(phase.to_bits()), phase);
        }
    }

    #[test]
    fn pressure_starts_above_three_quarters_of_the_slots() {
        assert!(!under_pressure(0, 64));
        assert!(!under_pressure(48, 64));
        assert!(under_pressure(49, 64));
        assert!(under_pressure(64, 64));
        assert!(!under_pressure(7_500, 10_000));
        assert!(under_pressure(7_501, 10_000));
        assert!(!under_pressure(usize::MAX / 2, usize::MAX));
    }

    #[test]
    fn without_pressure_the_whole_head_idle_wait_included_has_client_timeout() {
        let t0 = Instant::now();
        let timeout = secs(15);
        assert_eq!(head_deadline(t0, None, timeout, false), t0 + timeout);
        assert_eq!(
            head_deadline(t0, Some(t0 + secs(10)), timeout, false),
            t0 + timeout
        );
    }

    #[test]
    fn under_pressure_the_idle_wait_and_the_head_shrink() {
        let t0 = Instant::now();
        let timeout = secs(15);
        assert_eq!(
            head_deadline(t0, None, timeout, true),
            t0 + PRESSURE_IDLE_WAIT
        );
        // Measured from the first byte, not from the start of the wait...
        let first = t0 + ms(1500);
        assert_eq!(
            head_deadline(t0, Some(first), timeout, true),
            first + PRESSURE_HEAD_TIMEOUT
        );
        // ...and never later than without pressure.
        let late = t0 + secs(12);
        assert_eq!(head_deadline(t0, Some(late), timeout, true), t0 + timeout);
        assert_eq!(head_deadline(t0, None, ms(500), true), t0 + ms(500));
    }

    #[test]
    fn a_connection_serving_a_request_is_never_reclaimed() {
        let now = secs(1000);
        assert_eq!(
            choose_victim([(1, Phase::Busy), (2, Phase::Busy)], now),
            None
        );
        assert_eq!(choose_victim(Vec::<(u8, Phase)>::new(), now), None);
    }

    #[test]
    fn the_keep_alive_connection_idle_longest_goes_first() {
        let now = secs(100);
        let conns = [
            (1, Phase::Idle(secs(95))),
            (2, Phase::Busy),
            (3, Phase::Idle(secs(90))),
            (4, Phase::Idle(secs(99))),
        ];
        assert_eq!(choose_victim(conns, now), Some(3));
        // Between requests there is no grace: a response sent a moment ago is complete.
        assert_eq!(
            choose_victim([(1, Phase::Idle(now)), (2, Phase::Busy)], now),
            Some(1)
        );
    }

    #[test]
    fn a_head_arriving_for_longer_than_the_grace_goes_before_idle_connections() {
        let now = secs(100);
        let slow = now - RECLAIM_GRACE;
        let conns = [
            (1, Phase::Idle(secs(10))),
            (2, Phase::Head(slow)),
            (3, Phase::Head(slow - ms(1))),
        ];
        assert_eq!(choose_victim(conns, now), Some(3));
        // A head younger than the grace is left alone, even when nothing else qualifies.
        let young = now - RECLAIM_GRACE + ms(1);
        assert_eq!(
            choose_victim([(1, Phase::Idle(secs(10))), (2, Phase::Head(young))], now),
            Some(1)
        );
        assert_eq!(choose_victim([(2, Phase::Head(young))], now), None);
    }

    #[test]
    fn a_silent_new_connection_goes_last_and_only_after_the_grace() {
        let now = secs(100);
        let fresh = now - ms(10);
        assert_eq!(choose_victim([(1, Phase::New(fresh))], now), None);
        let silent = now - RECLAIM_GRACE;
        assert_eq!(choose_victim([(1, Phase::New(silent))], now), Some(1));
        let conns = [(1, Phase::New(secs(1))), (2, Phase::Idle(secs(99)))];
        assert_eq!(choose_victim(conns, now), Some(2));
    }

    #[test]
    fn a_phase_from_the_future_is_not_aged() {
        // Times come from one clock, but a phase written just after `now` was read must
        // not underflow into a very old one.
        let now = secs(5);
        assert_eq!(choose_victim([(1, Phase::Head(secs(6)))], now), None);
        assert_eq!(choose_victim([(1, Phase::New(secs(6)))], now), None);
    }
}
