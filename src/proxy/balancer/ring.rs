//! The consistent hash ring of `ip_hash` and `uri_hash` (Karger et al., 1997; the layout of
//! memcached's "ketama" clients and of nginx's `hash ... consistent`).
//!
//! Each backend is put on a circle of 2^64 points many times over: `POINTS_PER_WEIGHT`
//! points per unit of weight, each at the SHA-1 of `host:port#n`. A request's key (a client
//! address, a URL) is hashed onto the same circle, and the first backend point clockwise
//! from it owns the key. So a key always lands on the same backend while the backends stay
//! the same; when one goes down its keys fall to the next point clockwise (spread over the
//! others, because its points are scattered), and every other key stays where it was. The
//! points depend only on the backends' addresses and weights, so two proxies with the same
//! `backend` lines agree on every key without talking to each other.
//!
//! Pure data and arithmetic: which backends are usable is the caller's filter (`choice`).

use sha1_smol::Sha1;

/// Points a backend gets on the ring per unit of weight. More points spread the keys more
/// evenly (the share of a backend with `n` points varies by about `1/sqrt(n)`), at the cost
/// of memory and of building time: 100 per unit keeps three equal backends within a few
/// percent of a third each, and the largest ring (weight 100) at 10,000 points a backend.
pub const POINTS_PER_WEIGHT: u32 = 100;

/// Backends placed on a circle of `u64` points.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ring {
    /// Invariant: sorted by point (then id), so a key's owner is found by binary search.
    points: Vec<(u64, usize)>,
}

impl Ring {
    /// A ring of `members`: each backend's id, its `host:port` (what its points are hashed
    /// from) and its weight.
    pub fn new<'a>(members: impl IntoIterator<Item = (usize, &'a str, u32)>) -> Ring {
        let mut points = Vec::new();
        for (id, name, weight) in members {
            for n in 0..weight.saturating_mul(POINTS_PER_WEIGHT) {
                points.push((point(format!("{name}#{n}").as_bytes()), id));
            }
        }
        points.sort_unstable();
        Ring { points }
    }

    /// Every backend on the ring once, in the order met going clockwise from `key`: the
    /// key's owner first, then the backend that takes its keys when it is unusable, and so
    /// on.
    pub fn walk(&self, key: u64) -> Vec<usize> {
        let start = self.points.partition_point(|&(p, _)| p < key);
        let (before, after) = self.points.split_at(start);
        let mut order: Vec<usize> = Vec::new();
        for &(_, id) in after.iter().chain(before) {
            if !order.contains(&id) {
                order.push(id);
            }
        }
        order
    }
}

/// The point of `bytes` on the ring: the first 64 bits of their SHA-1.
pub fn point(bytes: &[u8]) -> u64 {
    let digest = Sha1::from(bytes).digest().bytes();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn three(weights: [u32; 3]) -> Ring {
        let names = ["10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80"];
        Ring::new((0..3).map(|i| (i, names[i], weights[i])))
    }

    /// The owner of each of `keys` keys.
    fn owners(ring: &Ring, keys: u32) -> Vec<usize> {
        (0..keys)
            .map(|k| ring.walk(point(format!("/page/{k}").as_bytes()))[0])
            .collect()
    }

    fn shares(owners: &[usize]) -> [usize; 3] {
        let mut counts = [0; 3];
        for &o in owners {
            counts[o] += 1;
        }
        counts
    }

    #[test]
    fn a_walk_lists_every_backend_once_starting_with_the_owner() {
        let ring = three([1, 1, 1]);
        for key in [0, 1 << 63, u64::MAX, point(b"x")] {
            let mut order = ring.walk(key);
            assert_eq!(order.len(), 3);
            order.sort_unstable();
            assert_eq!(order, [0, 1, 2]);
        }
        assert!(Ring::default().walk(5).is_empty());
    }

    #[test]
    fn keys_spread_evenly_and_by_weight() {
        let even = shares(&owners(&three([1, 1, 1]), 30_000));
        for count in even {
            assert!((8_500..=11_500).contains(&count), "{even:?}");
        }
        let weighted = shares(&owners(&three([3, 1, 1]), 30_000));
        assert!((16_500..=19_500).contains(&weighted[0]), "{weighted:?}");
    }

    #[test]
    fn a_backend_leaving_moves_only_its_own_keys() {
        let all = three([1, 1, 1]);
        let names = ["10.0.0.1:80", "10.0.0.3:80"];
        let without_second = Ring::new([(0, names[0], 1), (2, names[1], 1)]);
        let before = owners(&all, 3_000);
        let after = owners(&without_second, 3_000);
        for (was, is) in before.iter().zip(&after) {
            if *was != 1 {
                assert_eq!(was, is, "a key of a backend that stayed moved");
            }
        }
        let moved = shares(&after);
        assert!(moved[0] > 1_200 && moved[2] > 1_200, "{moved:?}");
        // And the walk agrees: a key's second backend is where it goes.
        for k in 0..300 {
            let key = point(format!("/page/{k}").as_bytes());
            let order = all.walk(key);
            let next = *order.iter().find(|&&id| id != 1).unwrap();
            assert_eq!(without_second.walk(key)[0], next);
        }
    }

    #[test]
    fn a_raised_weight_takes_keys_only_for_itself() {
        let before = owners(&three([1, 1, 1]), 3_000);
        let after = owners(&three([2, 1, 1]), 3_000);
        for (was, is) in before.iter().zip(&after) {
            assert!(
                was == is || *is == 0,
                "a key moved between two other backends"
            );
        }
    }
}
