//! The choice itself, as a pure function: from every backend's weight, place in rotation,
//! health and load at `now`, and the request's key or a random number, the order in which
//! one request tries the backends (`plan`). Nothing here locks, reads a clock or draws a
//! random number; `Balancer::plan` passes them in, so each algorithm is tested with made-up
//! times and loads.
//!
//! Every algorithm chooses among the same candidates. A backend is *usable* when the
//! operator keeps it in rotation (`Admin::Active`) and it is not marked down. The usable
//! primaries are chosen from first; the usable backups only when no primary is usable (and,
//! behind the primaries, as the last resort of one request whose every primary failed).
//! When nothing is usable, every backend still in rotation is tried, down or not: trying a
//! down backend beats failing without trying. Drained and disabled backends never are.
//!
//! Then, within those candidates:
//! - `round_robin`: in turn from the rotation index (`State::next`, the index the course
//!   describes); with unequal weights, nginx's smooth weighted round robin, which spreads
//!   the heavy backend's turns out (3:1:1 gives a b a c a, never three a's in a row).
//! - `least_conn`: the fewest requests in flight for its weight (`load / weight`, compared
//!   as `load_a * weight_b < load_b * weight_a`), ties in round-robin order.
//! - `ip_hash`, `uri_hash`: the first candidate clockwise from the key on the hash ring
//!   (`ring`); the rest of the walk is the failover order.
//! - `random_two`: two candidates drawn at random in proportion to their weights; the less
//!   loaded one wins, the first drawn on a tie.
//!
//! After the first choice, the plan lists the other candidates (the order of later attempts
//! when a request may be retried), then the backups behind the primaries.

use std::cmp::Ordering;
use std::time::Instant;

use super::ring::Ring;
use super::{rotation, Health};
use crate::proxy::config::{Backend, Balance};

/// Whether the operator keeps a backend in rotation (the status page's buttons).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Admin {
    /// In rotation.
    #[default]
    Active,
    /// Takes no new request; those in flight finish (shown `draining` until they have).
    Draining,
    /// Takes no new request.
    Disabled,
}

/// What the balancer keeps about one backend.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// Its share relative to the others, 1..=`MAX_WEIGHT` (changed at run time by
    /// `State::set_weight`).
    pub weight: u32,
    /// Used only while no primary is usable.
    pub backup: bool,
    /// In rotation, draining or disabled.
    pub admin: Admin,
    /// Passive and active health.
    pub health: Health,
    /// Smooth weighted round robin's running score (nginx's `current_weight`).
    current: i64,
}

impl Member {
    /// In rotation and not marked down at `now`.
    fn usable(&self, now: Instant) -> bool {
        self.admin == Admin::Active && !self.health.is_down(now)
    }
}

/// What changes as requests are balanced: the rotation index, each backend's member
/// record, and the hash rings.
#[derive(Debug)]
pub struct State {
    /// Where the next round-robin turn starts. Invariant: `< members.len()` when there is at
    /// least one backend.
    pub next: usize,
    /// Invariant: one per backend, in configuration order.
    pub members: Vec<Member>,
    /// The rings of the primaries (`[0]`) and of the backups (`[1]`), for `ip_hash` and
    /// `uri_hash`; empty for the other algorithms.
    rings: [Ring; 2],
    /// Whether the rings are kept (the algorithm hashes).
    hashing: bool,
}

/// What one choice depends on besides the state, passed in by the caller.
#[derive(Clone, Copy, Debug)]
pub struct Inputs<'a> {
    /// The moment of the choice, for health.
    pub now: Instant,
    /// Requests in flight on each backend, in configuration order.
    pub load: &'a [usize],
    /// The request's point on the hash ring (`ip_hash`, `uri_hash`; see `ring::point`).
    pub key: u64,
    /// A random number (`random_two`): its low and high halves are the two draws.
    pub random: u64,
}

impl State {
    /// Every backend in rotation and up, with its configured weight; rings built when
    /// `balance` hashes.
    pub fn new(backends: &[Backend], balance: Balance) -> State {
        let members = backends
            .iter()
            .map(|b| Member {
                weight: b.weight,
                backup: b.backup,
                admin: Admin::Active,
                health: Health::default(),
                current: 0,
            })
            .collect();
        let hashing = matches!(balance, Balance::IpHash | Balance::UriHash);
        let mut state = State {
            next: 0,
            members,
            rings: [Ring::default(), Ring::default()],
            hashing,
        };
        state.build_rings(backends);
        state
    }

    /// Gives backend `id` a new weight (its ring points follow); returns the old one.
    pub fn set_weight(&mut self, id: usize, weight: u32, backends: &[Backend]) -> Option<u32> {
        let member = self.members.get_mut(id)?;
        let old = std::mem::replace(&mut member.weight, weight);
        self.build_rings(backends);
        Some(old)
    }

    fn build_rings(&mut self, backends: &[Backend]) {
        if !self.hashing {
            return;
        }
        let names: Vec<String> = backends.iter().map(Backend::authority).collect();
        self.rings = [false, true].map(|backup| {
            Ring::new(
                self.members
                    .iter()
                    .enumerate()
                    .filter(|(_, m)| m.backup == backup)
                    .map(|(id, m)| (id, names[id].as_str(), m.weight)),
            )
        });
    }

    /// The candidates (see the module docs) and the spare backends behind them.
    fn candidates(&self, now: Instant) -> (Vec<usize>, Vec<usize>) {
        let pick = |backup: bool, ok: &dyn Fn(&Member) -> bool| -> Vec<usize> {
            (0..self.members.len())
                .filter(|&i| self.members[i].backup == backup && ok(&self.members[i]))
                .collect()
        };
        let usable = |m: &Member| m.usable(now);
        let (primaries, backups) = (pick(false, &usable), pick(true, &usable));
        if !primaries.is_empty() {
            return (primaries, backups);
        }
        if !backups.is_empty() {
            return (backups, Vec::new());
        }
        let in_rotation = |m: &Member| m.admin == Admin::Active;
        let (primaries, backups) = (pick(false, &in_rotation), pick(true, &in_rotation));
        if primaries.is_empty() {
            (backups, Vec::new())
        } else {
            (primaries, backups)
        }
    }

    /// Round robin: the rotation index with equal weights, smooth weighted round robin
    /// otherwise; advances the index past the chosen backend.
    fn round_robin(&mut self, candidates: &[usize]) -> Vec<usize> {
        let n = self.members.len();
        let weight = |i: usize| self.members[i].weight;
        let first = if candidates
            .iter()
            .all(|&i| weight(i) == weight(candidates[0]))
        {
            in_turn(self.next, candidates, n)[0]
        } else {
            self.smooth_weighted(candidates)
        };
        self.next = (first + 1) % n;
        in_turn(first, candidates, n)
    }

    /// nginx's smooth weighted round robin (ngx_http_upstream_get_peer): every candidate's
    /// score grows by its weight, the highest score wins (the first in configuration order
    /// on a tie), and the winner's score drops by the sum of the weights. Over any run of
    /// `sum` turns each backend wins `weight` of them, spread as evenly as they can be.
    fn smooth_weighted(&mut self, candidates: &[usize]) -> usize {
        let mut total = 0;
        let mut best = candidates[0];
        for &i in candidates {
            let member = &mut self.members[i];
            member.current += i64::from(member.weight);
            total += i64::from(member.weight);
            if self.members[i].current > self.members[best].current {
                best = i;
            }
        }
        self.members[best].current -= total;
        best
    }

    /// Least connections: the candidates by `load / weight`, ties in round-robin order;
    /// advances the index past the first.
    fn least_conn(&mut self, candidates: &[usize], load: &[usize]) -> Vec<usize> {
        let n = self.members.len();
        let mut order = in_turn(self.next, candidates, n);
        order.sort_by(|&a, &b| self.compare_load(a, b, load));
        self.next = (order[0] + 1) % n;
        order
    }

    /// The candidates in the order met clockwise from `key` on their ring.
    fn ring_order(&self, candidates: &[usize], key: u64) -> Vec<usize> {
        let Some(&first) = candidates.first() else {
            return Vec::new();
        };
        let ring = &self.rings[usize::from(self.members[first].backup)];
        let mut order: Vec<usize> = ring
            .walk(key)
            .into_iter()
            .filter(|i| candidates.contains(i))
            .collect();
        // Not reached while the rings are kept (every member has points): a safeguard.
        order.extend(
            candidates
                .iter()
                .filter(|&i| !order.contains(i))
                .collect::<Vec<_>>(),
        );
        order
    }

    /// Two candidates drawn in proportion to their weights (the halves of `random`); the
    /// less loaded wins, the first drawn on a tie. Then the others, least loaded first.
    fn random_two(&self, candidates: &[usize], inputs: &Inputs<'_>) -> Vec<usize> {
        let low = inputs.random & u64::from(u32::MAX);
        let first = self.weighted_draw(candidates, low);
        let rest: Vec<usize> = candidates.iter().copied().filter(|&i| i != first).collect();
        if rest.is_empty() {
            return vec![first];
        }
        let second = self.weighted_draw(&rest, inputs.random >> 32);
        let load = inputs.load;
        let (winner, loser) = match self.compare_load(second, first, load) {
            Ordering::Less => (second, first),
            _ => (first, second),
        };
        let mut others: Vec<usize> = rest.into_iter().filter(|&i| i != second).collect();
        others.sort_by(|&a, &b| self.compare_load(a, b, load));
        [winner, loser].into_iter().chain(others).collect()
    }

    /// The candidate that `draw` (uniform over `0..2^32`) falls on when each has a stretch
    /// of the total weight as long as its own weight.
    fn weighted_draw(&self, candidates: &[usize], draw: u64) -> usize {
        let total: u64 = candidates
            .iter()
            .map(|&i| u64::from(self.members[i].weight))
            .sum();
        let mut left = draw % total.max(1);
        for &i in candidates {
            let weight = u64::from(self.members[i].weight);
            if left < weight {
                return i;
            }
            left -= weight;
        }
        candidates[0]
    }

    /// `load / weight` of `a` against that of `b`, without division.
    fn compare_load(&self, a: usize, b: usize, load: &[usize]) -> Ordering {
        let scaled = |of: usize, by: usize| {
            let in_flight = load.get(of).copied().unwrap_or(0) as u128;
            in_flight * u128::from(self.members[by].weight)
        };
        scaled(a, b).cmp(&scaled(b, a))
    }
}

/// The plan for one request under `balance` (see the module docs): the backends to try, in
/// order, each once; empty when every backend is drained or disabled. Advances the
/// rotation of the algorithms that keep one.
pub fn plan(state: &mut State, balance: Balance, inputs: &Inputs<'_>) -> Vec<usize> {
    let (candidates, spare) = state.candidates(inputs.now);
    if candidates.is_empty() {
        return Vec::new();
    }
    let mut order = match balance {
        Balance::RoundRobin => state.round_robin(&candidates),
        Balance::LeastConn => state.least_conn(&candidates, inputs.load),
        Balance::IpHash | Balance::UriHash => state.ring_order(&candidates, inputs.key),
        Balance::RandomTwo => state.random_two(&candidates, inputs),
    };
    if state.hashing {
        order.extend(state.ring_order(&spare, inputs.key));
    } else {
        order.extend(spare);
    }
    order
}

/// `candidates` in rotation order, starting at `start` (or the first one after it) in a
/// ring of `n` backends.
fn in_turn(start: usize, candidates: &[usize], n: usize) -> Vec<usize> {
    rotation(start, n)
        .filter(|i| candidates.contains(i))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::balancer::ring::point;
    use std::time::Duration;

    /// Backends on ports 1..; `spec` gives each one's weight and whether it is a backup.
    fn backends(spec: &[(u32, bool)]) -> Vec<Backend> {
        spec.iter()
            .enumerate()
            .map(|(i, &(weight, backup))| Backend {
                weight,
                backup,
                ..format!("10.0.0.{}:80", i + 1).parse().unwrap()
            })
            .collect()
    }

    fn equal(n: usize) -> Vec<Backend> {
        backends(&vec![(1, false); n])
    }

    fn inputs(now: Instant, load: &[usize]) -> Inputs<'_> {
        Inputs {
            now,
            load,
            key: 0,
            random: 0,
        }
    }

    /// The first choice of `rounds` plans in a row, with nothing in flight.
    fn firsts(state: &mut State, balance: Balance, rounds: usize) -> Vec<usize> {
        let now = Instant::now();
        let load = vec![0; state.members.len()];
        (0..rounds)
            .map(|_| plan(state, balance, &inputs(now, &load))[0])
            .collect()
    }

    fn mark_down(state: &mut State, id: usize, now: Instant) {
        state.members[id].health.down_until = Some(now + Duration::from_secs(10));
    }

    #[test]
    fn equal_weights_take_turns_and_the_plan_lists_the_rest_in_turn() {
        let mut state = State::new(&equal(3), Balance::RoundRobin);
        assert_eq!(
            firsts(&mut state, Balance::RoundRobin, 7),
            [0, 1, 2, 0, 1, 2, 0]
        );
        let now = Instant::now();
        assert_eq!(
            plan(&mut state, Balance::RoundRobin, &inputs(now, &[0; 3])),
            [1, 2, 0]
        );
    }

    #[test]
    fn weights_3_1_1_are_smooth_weighted_round_robin() {
        let mut state = State::new(
            &backends(&[(3, false), (1, false), (1, false)]),
            Balance::RoundRobin,
        );
        let turns = firsts(&mut state, Balance::RoundRobin, 10);
        assert_eq!(turns, [0, 1, 0, 2, 0, 0, 1, 0, 2, 0]);
        let mut state = State::new(
            &backends(&[(5, false), (1, false), (1, false)]),
            Balance::RoundRobin,
        );
        // nginx's own example (ngx_http_upstream_round_robin.c): { a, a, b, a, c, a, a }.
        assert_eq!(
            firsts(&mut state, Balance::RoundRobin, 7),
            [0, 0, 1, 0, 2, 0, 0]
        );
    }

    #[test]
    fn smooth_weighted_round_robin_keeps_its_proportions_and_never_runs_three() {
        let mut state = State::new(
            &backends(&[(3, false), (1, false), (1, false)]),
            Balance::RoundRobin,
        );
        let turns = firsts(&mut state, Balance::RoundRobin, 250);
        let count = |id| turns.iter().filter(|&&t| t == id).count();
        assert_eq!((count(0), count(1), count(2)), (150, 50, 50));
        assert!(!turns.windows(3).any(|w| w == [0, 0, 0]));
    }

    #[test]
    fn least_conn_takes_the_lightest_for_its_weight_ties_in_turn() {
        let mut state = State::new(
            &backends(&[(1, false), (1, false), (2, false)]),
            Balance::LeastConn,
        );
        let now = Instant::now();
        // Busy first backend: never chosen while the others have less in flight.
        assert_eq!(
            plan(&mut state, Balance::LeastConn, &inputs(now, &[5, 1, 2])),
            [1, 2, 0],
            "1/1 ties 2/2; the tie goes in turn (from 0, so 1), and 5/1 comes last"
        );
        assert_eq!(
            plan(&mut state, Balance::LeastConn, &inputs(now, &[5, 1, 2]))[0],
            2,
            "the turn has moved past 1"
        );
        assert_eq!(
            plan(&mut state, Balance::LeastConn, &inputs(now, &[0, 0, 1]))[0],
            0,
            "1 in flight on weight 2 is more than none"
        );
        assert_eq!(
            plan(&mut state, Balance::LeastConn, &inputs(now, &[2, 2, 3]))[0],
            2,
            "3/2 is less than 2/1"
        );
        // Nothing in flight anywhere: plain round robin.
        let mut state = State::new(&equal(3), Balance::LeastConn);
        assert_eq!(firsts(&mut state, Balance::LeastConn, 4), [0, 1, 2, 0]);
    }

    #[test]
    fn a_hash_keeps_a_key_on_one_backend_until_that_backend_is_unusable() {
        let mut state = State::new(&equal(3), Balance::IpHash);
        let now = Instant::now();
        let load = [0; 3];
        let key = point(b"192.0.2.7");
        let keyed = Inputs {
            key,
            ..inputs(now, &load)
        };
        let order = plan(&mut state, Balance::IpHash, &keyed);
        assert_eq!(order.len(), 3);
        for _ in 0..5 {
            assert_eq!(plan(&mut state, Balance::IpHash, &keyed), order);
        }
        mark_down(&mut state, order[0], now);
        assert_eq!(
            plan(&mut state, Balance::IpHash, &keyed),
            order[1..],
            "its keys go to the next backend on the ring"
        );
        let later = Inputs {
            now: now + Duration::from_secs(11),
            ..keyed
        };
        assert_eq!(plan(&mut state, Balance::IpHash, &later), order, "and back");
        // Different keys spread: 300 URLs cover every backend.
        let mut seen = [false; 3];
        for k in 0..300 {
            let key = point(format!("/p/{k}").as_bytes());
            let keyed = Inputs { key, ..later };
            seen[plan(&mut state, Balance::UriHash, &keyed)[0]] = true;
        }
        assert_eq!(seen, [true; 3]);
    }

    #[test]
    fn random_two_takes_the_less_loaded_of_its_two_draws() {
        let state = State::new(&equal(3), Balance::RandomTwo);
        let now = Instant::now();
        let load = [4, 0, 9];
        // Draws 0 then (of the other two) 1: backend 1 is less loaded.
        let draw = |low: u64, high: u64| Inputs {
            random: low | (high << 32),
            ..inputs(now, &load)
        };
        assert_eq!(state.random_two(&[0, 1, 2], &draw(0, 0)), [1, 0, 2]);
        // Draws 2 then 0: 0 wins; 1 comes after them.
        assert_eq!(state.random_two(&[0, 1, 2], &draw(2, 0)), [0, 2, 1]);
        // A tie goes to the first drawn.
        let idle = [0; 3];
        let tie = Inputs {
            random: 1,
            ..inputs(now, &idle)
        };
        assert_eq!(state.random_two(&[0, 1, 2], &tie)[0], 1);
        assert_eq!(state.random_two(&[2], &tie), [2]);
    }

    #[test]
    fn random_draws_follow_the_weights() {
        let state = State::new(
            &backends(&[(3, false), (1, false), (1, false)]),
            Balance::RandomTwo,
        );
        let mut counts = [0; 3];
        for draw in 0..500 {
            counts[state.weighted_draw(&[0, 1, 2], draw)] += 1;
        }
        assert_eq!(counts, [300, 100, 100]);
    }

    #[test]
    fn backups_serve_only_while_no_primary_is_usable() {
        let spec = [(1, false), (1, false), (1, true)];
        for balance in Balance::ALL {
            let mut state = State::new(&backends(&spec), balance);
            let now = Instant::now();
            let load = [0; 3];
            for _ in 0..6 {
                let order = plan(&mut state, balance, &inputs(now, &load));
                assert_ne!(order[0], 2, "{balance}: a backup was chosen");
                assert_eq!(order[2], 2, "{balance}: the backup comes last");
            }
            mark_down(&mut state, 0, now);
            mark_down(&mut state, 1, now);
            assert_eq!(
                plan(&mut state, balance, &inputs(now, &load)),
                [2],
                "{balance}"
            );
            state.members[2].admin = Admin::Disabled;
            let order = plan(&mut state, balance, &inputs(now, &load));
            assert_eq!(order.len(), 2, "{balance}: the down primaries are tried");
        }
    }

    #[test]
    fn drained_and_disabled_backends_are_never_tried() {
        let mut state = State::new(&equal(3), Balance::RoundRobin);
        state.members[1].admin = Admin::Draining;
        let now = Instant::now();
        mark_down(&mut state, 0, now);
        mark_down(&mut state, 2, now);
        assert_eq!(
            plan(&mut state, Balance::RoundRobin, &inputs(now, &[0; 3])),
            [0, 2],
            "down but in rotation is still tried; draining is not"
        );
        state.members[0].admin = Admin::Disabled;
        state.members[2].admin = Admin::Disabled;
        assert!(plan(&mut state, Balance::RoundRobin, &inputs(now, &[0; 3])).is_empty());
    }

    #[test]
    fn a_new_weight_takes_effect_at_once() {
        let list = equal(2);
        let mut state = State::new(&list, Balance::RoundRobin);
        assert_eq!(state.set_weight(0, 3, &list), Some(1));
        let turns = firsts(&mut state, Balance::RoundRobin, 8);
        assert_eq!(turns.iter().filter(|&&t| t == 0).count(), 6);
        assert_eq!(state.set_weight(7, 3, &list), None);
    }
}
