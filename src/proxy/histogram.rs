//! Response times counted in fixed buckets: what `relevo_request_duration_seconds` exposes
//! on the metrics page (`metrics`) and what the status page's latency chart draws. A plain
//! value, updated under its backend's lock in `stats`; nothing here reads a clock.
//!
//! The bounds are fixed (Prometheus' client libraries default to a similar ladder), so two
//! scrapes, two proxies or two backends can always be compared bucket by bucket.

use std::time::Duration;

/// Upper bounds of the buckets, in microseconds (inclusive: a time equal to a bound counts
/// in its bucket): 1 ms to 10 s in steps of 1, 2.5 and 5. One more bucket, without bound
/// (`+Inf`), takes what is slower.
pub const DURATION_BOUNDS_MICROS: [u64; 13] = [
    1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000,
    5_000_000, 10_000_000,
];

/// Buckets, the unbounded last one included.
pub const BUCKETS: usize = DURATION_BOUNDS_MICROS.len() + 1;

/// Times counted per bucket, with their sum.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Histogram {
    /// Times counted in each bucket alone (not cumulative); the last is `+Inf`.
    counts: [u64; BUCKETS],
    /// Sum of every time counted, in microseconds.
    sum_micros: u64,
}

impl Histogram {
    /// Counts one time.
    pub fn observe(&mut self, time: Duration) {
        let micros = u64::try_from(time.as_micros()).unwrap_or(u64::MAX);
        let bucket = DURATION_BOUNDS_MICROS.partition_point(|&bound| bound < micros);
        self.counts[bucket] += 1;
        self.sum_micros = self.sum_micros.saturating_add(micros);
    }

    /// Times counted in each bucket alone; the last is the slower than every bound.
    pub fn counts(&self) -> &[u64; BUCKETS] {
        &self.counts
    }

    /// Times counted up to and including each bound, then in all (`+Inf`): the
    /// cumulative form Prometheus exposes.
    pub fn cumulative(&self) -> [u64; BUCKETS] {
        let mut total = 0;
        self.counts.map(|n| {
            total += n;
            total
        })
    }

    /// Times counted in all.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Sum of every time counted.
    pub fn sum(&self) -> Duration {
        Duration::from_micros(self.sum_micros)
    }
}

/// A bucket's bound as a short label for a chart axis: `1ms`, `2.5ms`, `1s`, `+Inf`.
pub fn bound_label(bucket: usize) -> String {
    match DURATION_BOUNDS_MICROS.get(bucket) {
        Some(&micros) if micros < 1_000_000 => format!("{}ms", micros as f64 / 1_000.0),
        Some(&micros) => format!("{}s", micros as f64 / 1_000_000.0),
        None => "+Inf".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_time_goes_in_the_first_bucket_whose_bound_it_does_not_exceed() {
        let mut h = Histogram::default();
        h.observe(Duration::from_micros(1_000)); // on the bound: bucket 0
        h.observe(Duration::from_micros(1_001)); // bucket 1 (<= 2.5 ms)
        h.observe(Duration::from_millis(7)); // bucket 3 (<= 10 ms)
        h.observe(Duration::from_secs(60)); // beyond 10 s: +Inf
        assert_eq!(h.counts()[..4], [1, 1, 0, 1]);
        assert_eq!(h.counts()[BUCKETS - 1], 1);
        assert_eq!(h.count(), 4);
        assert_eq!(
            h.sum(),
            Duration::from_micros(1_000 + 1_001 + 7_000 + 60_000_000)
        );
        let cumulative = h.cumulative();
        assert_eq!(cumulative[..5], [1, 2, 2, 3, 3]);
        assert_eq!(cumulative[BUCKETS - 2], 3);
        assert_eq!(cumulative[BUCKETS - 1], 4, "+Inf holds every time");
    }

    #[test]
    fn labels_are_short_and_end_with_infinity() {
        let labels: Vec<String> = (0..BUCKETS).map(bound_label).collect();
        assert_eq!(labels[0], "1ms");
        assert_eq!(labels[1], "2.5ms");
        assert_eq!(labels[9], "1s");
        assert_eq!(labels[10], "2.5s");
        assert_eq!(labels[BUCKETS - 1], "+Inf");
    }

    #[test]
    fn the_bounds_rise() {
        assert!(DURATION_BOUNDS_MICROS.windows(2).all(|w| w[0] < w[1]));
    }
}
