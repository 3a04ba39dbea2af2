//! Request latency histograms: time to first token, time per output token and end-to-end
//! time, per engine, with vLLM's bucket bounds (what gateways and dashboards expect).

/// Bounds (seconds) of the time-to-first-token buckets.
pub const TTFT_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0,
];
/// Bounds (seconds) of the time-per-output-token buckets.
pub const TPOT_BUCKETS: &[f64] =
    &[0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0];
/// Bounds (seconds) of the end-to-end buckets.
pub const E2E_BUCKETS: &[f64] =
    &[0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0, 480.0, 960.0];

/// A cumulative histogram in Prometheus' shape: `counts[i]` observations `<= bounds[i]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Histogram {
    bounds: &'static [f64],
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    /// An empty histogram over `bounds` (ascending upper bounds; `+Inf` is implied).
    pub fn new(bounds: &'static [f64]) -> Histogram {
        Histogram { bounds, counts: vec![0; bounds.len()], sum: 0.0, count: 0 }
    }

    /// Adds one observation.
    pub fn observe(&mut self, value: f64) {
        for (c, le) in self.counts.iter_mut().zip(self.bounds) {
            if value <= *le {
                *c += 1;
            }
        }
        self.sum += value;
        self.count += 1;
    }

    /// `(upper bound, cumulative count)` per bucket, `+Inf` excluded.
    pub fn buckets(&self) -> impl Iterator<Item = (f64, u64)> + '_ {
        self.bounds.iter().copied().zip(self.counts.iter().copied())
    }

    /// Sum of all observations.
    pub fn sum(&self) -> f64 {
        self.sum
    }

    /// Number of observations (the `+Inf` bucket).
    pub fn count(&self) -> u64 {
        self.count
    }
}

/// The latency histograms of one engine's finished requests.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestLatency {
    /// Arrival to the first generated token (seconds).
    pub time_to_first_token: Histogram,
    /// Mean time between output tokens after the first, per request (seconds).
    pub time_per_output_token: Histogram,
    /// Arrival to the last token (seconds).
    pub e2e: Histogram,
}

impl Default for RequestLatency {
    fn default() -> Self {
        RequestLatency {
            time_to_first_token: Histogram::new(TTFT_BUCKETS),
            time_per_output_token: Histogram::new(TPOT_BUCKETS),
            e2e: Histogram::new(E2E_BUCKETS),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative() {
        let mut h = Histogram::new(&[0.1, 1.0]);
        for v in [0.05, 0.1, 0.5, 3.0] {
            h.observe(v);
        }
        assert_eq!(h.buckets().collect::<Vec<_>>(), vec![(0.1, 2), (1.0, 3)]);
        assert_eq!(h.count(), 4);
        assert!((h.sum() - 3.65).abs() < 1e-12);
    }

    #[test]
    fn bounds_ascend() {
        for b in [TTFT_BUCKETS, TPOT_BUCKETS, E2E_BUCKETS] {
            assert!(b.windows(2).all(|w| w[0] < w[1]));
        }
    }
}
