//! Latency histograms: one per member while the run goes (no sharing, no
//! locks on the receive path), merged into one at the end.

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::procfs::round3;

/// Smallest latency told apart: 1 µs (values are nanoseconds).
const LOWEST_NS: u64 = 1_000;
/// Largest latency recorded; longer ones are clamped to it.
const HIGHEST_NS: u64 = 100_000_000_000;
/// Three significant digits: 0.1% resolution at every scale.
const SIGNIFICANT_DIGITS: u8 = 3;

/// One member's latencies. `u32` counts halve its memory; no member sees
/// four billion messages in a run.
pub fn member_histogram() -> Histogram<u32> {
    Histogram::new_with_bounds(LOWEST_NS, HIGHEST_NS, SIGNIFICANT_DIGITS)
        .expect("the bounds are valid constants")
}

/// The run's merged latencies.
pub fn run_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(LOWEST_NS, HIGHEST_NS, SIGNIFICANT_DIGITS)
        .expect("the bounds are valid constants")
}

/// Adds a member's counts to the run's histogram (the two count types
/// differ, so `Histogram::add` does not apply).
pub fn merge(run: &mut Histogram<u64>, member: &Histogram<u32>) {
    for bucket in member.iter_recorded() {
        run.saturating_record_n(
            bucket.value_iterated_to(),
            u64::from(bucket.count_at_value()),
        );
    }
}

/// Percentiles in milliseconds, as reported.
#[derive(Debug, Clone, Serialize)]
pub struct LatencySummary {
    /// How many latencies were recorded.
    pub samples: u64,
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile.
    pub p99_9_ms: f64,
    /// Largest.
    pub max_ms: f64,
}

impl LatencySummary {
    /// Summarizes a histogram of nanoseconds.
    pub fn of(histogram: &Histogram<u64>) -> LatencySummary {
        let ms = |ns: u64| round3(ns as f64 / 1e6);
        LatencySummary {
            samples: histogram.len(),
            p50_ms: ms(histogram.value_at_quantile(0.5)),
            p90_ms: ms(histogram.value_at_quantile(0.9)),
            p99_ms: ms(histogram.value_at_quantile(0.99)),
            p99_9_ms: ms(histogram.value_at_quantile(0.999)),
            max_ms: ms(histogram.max()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_histograms_merge_into_percentiles() {
        let mut run = run_histogram();
        for member in 0..10u64 {
            let mut histogram = member_histogram();
            for i in 1..=100u64 {
                histogram.saturating_record(i * 10_000 + member);
            }
            merge(&mut run, &histogram);
        }
        let summary = LatencySummary::of(&run);
        assert_eq!(summary.samples, 1000);
        assert!((summary.p50_ms - 0.5).abs() < 0.01, "{summary:?}");
        assert!((summary.max_ms - 1.0).abs() < 0.01, "{summary:?}");
    }
}
