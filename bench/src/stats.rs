//! Percentiles: exact ones over small sample sets (one value per player) and a bounded
//! log-linear histogram for per-frame samples (delays), whose memory does not grow with the run.

use serde_json::{json, Value};

/// The nearest-rank percentile `p` (0..=100) of sorted `values`: the smallest value such that at
/// least `p`% of the values are less than or equal to it. `None` when there are no values.
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    let n = sorted.len();
    if n == 0 {
        return None;
    }
    let p = p.clamp(0.0, 100.0);
    let rank = ((p / 100.0) * n as f64).ceil() as usize;
    sorted.get(rank.clamp(1, n) - 1).copied()
}

/// Summary of a set of samples.
#[derive(Clone, Debug, PartialEq)]
pub struct Summary {
    /// Number of samples.
    pub count: usize,
    /// Smallest.
    pub min: f64,
    /// 5th percentile.
    pub p5: f64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest.
    pub max: f64,
    /// Arithmetic mean.
    pub mean: f64,
}

impl Summary {
    /// Summarizes `values` (sorted in place; NaNs are dropped). `None` when empty.
    pub fn of(values: &mut Vec<f64>) -> Option<Summary> {
        values.retain(|v| !v.is_nan());
        values.sort_by(f64::total_cmp);
        let pick = |p| percentile(values, p);
        Some(Summary {
            count: values.len(),
            min: *values.first()?,
            p5: pick(5.0)?,
            p50: pick(50.0)?,
            p90: pick(90.0)?,
            p99: pick(99.0)?,
            max: *values.last()?,
            mean: values.iter().sum::<f64>() / values.len() as f64,
        })
    }

    /// The summary as a JSON object, values rounded to 3 decimals.
    pub fn to_json(&self) -> Value {
        json!({
            "count": self.count,
            "min": round3(self.min),
            "p5": round3(self.p5),
            "p50": round3(self.p50),
            "p90": round3(self.p90),
            "p99": round3(self.p99),
            "max": round3(self.max),
            "mean": round3(self.mean),
        })
    }
}

/// Rounds to 3 decimals for display.
pub fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

/// Sub-buckets per power of two: relative error at most 1/64.
const SUB_BITS: u32 = 5;
const SUB: u64 = 1 << SUB_BITS;
/// Buckets covering all of `u64`.
const BUCKETS: usize = (SUB + (64 - SUB_BITS as u64) * SUB) as usize;

/// A log-linear histogram of `u64` samples (microseconds, say) in a fixed 8 KiB: exact below
/// 32, then 32 buckets per power of two (at most 1.6% relative error).
#[derive(Clone, Debug)]
pub struct Histogram {
    counts: Box<[u32]>,
    total: u64,
    min: u64,
    max: u64,
    sum: u128,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: vec![0; BUCKETS].into_boxed_slice(),
            total: 0,
            min: u64::MAX,
            max: 0,
            sum: 0,
        }
    }
}

/// The bucket index of `v`.
fn bucket_of(v: u64) -> usize {
    if v < SUB {
        return v as usize;
    }
    let exp = 63 - v.leading_zeros(); // >= SUB_BITS
    let shift = exp - SUB_BITS;
    let mantissa = (v >> shift) - SUB; // 0..SUB
    (SUB + u64::from(shift) * SUB + mantissa) as usize
}

/// The smallest value and the width of bucket `b`.
fn bucket_range(b: usize) -> (u64, u64) {
    let b = b as u64;
    if b < SUB {
        return (b, 1);
    }
    let shift = (b - SUB) / SUB;
    let mantissa = (b - SUB) % SUB + SUB;
    (mantissa << shift, 1 << shift)
}

impl Histogram {
    /// Adds one sample.
    pub fn record(&mut self, v: u64) {
        if let Some(c) = self.counts.get_mut(bucket_of(v)) {
            *c = c.saturating_add(1);
        }
        self.total += 1;
        self.min = self.min.min(v);
        self.max = self.max.max(v);
        self.sum += u128::from(v);
    }

    /// Number of samples.
    pub fn count(&self) -> u64 {
        self.total
    }

    /// The nearest-rank percentile `p` (0..=100), as the middle of its bucket clamped to the
    /// exact min and max. `None` when empty.
    pub fn percentile(&self, p: f64) -> Option<u64> {
        if self.total == 0 {
            return None;
        }
        let rank = ((p.clamp(0.0, 100.0) / 100.0) * self.total as f64).ceil() as u64;
        let rank = rank.clamp(1, self.total);
        if rank == self.total {
            return Some(self.max);
        }
        let mut seen = 0u64;
        for (b, &c) in self.counts.iter().enumerate() {
            seen += u64::from(c);
            if seen >= rank {
                let (low, width) = bucket_range(b);
                return Some((low + width / 2).clamp(self.min, self.max));
            }
        }
        Some(self.max)
    }

    /// A [`Summary`] with every value divided by `scale` (1000.0 turns microseconds into ms).
    pub fn summary(&self, scale: f64) -> Option<Summary> {
        let pick = |p| self.percentile(p).map(|v| v as f64 / scale);
        Some(Summary {
            count: self.total as usize,
            min: self.min as f64 / scale,
            p5: pick(5.0)?,
            p50: pick(50.0)?,
            p90: pick(90.0)?,
            p99: pick(99.0)?,
            max: self.max as f64 / scale,
            mean: self.sum as f64 / self.total as f64 / scale,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.0), Some(1.0));
        assert_eq!(percentile(&v, 5.0), Some(5.0));
        assert_eq!(percentile(&v, 50.0), Some(50.0));
        assert_eq!(percentile(&v, 99.0), Some(99.0));
        assert_eq!(percentile(&v, 100.0), Some(100.0));
        assert_eq!(percentile(&[], 50.0), None);
        assert_eq!(percentile(&[7.0], 5.0), Some(7.0));
        // Four values: p50 is the 2nd, p51 the 3rd, p5 the 1st.
        let v = [10.0, 20.0, 30.0, 40.0];
        assert_eq!(percentile(&v, 50.0), Some(20.0));
        assert_eq!(percentile(&v, 51.0), Some(30.0));
        assert_eq!(percentile(&v, 5.0), Some(10.0));
        assert_eq!(percentile(&v, 250.0), Some(40.0));
    }

    #[test]
    fn summary_sorts_and_drops_nan() {
        let mut v = vec![3.0, f64::NAN, 1.0, 2.0];
        let s = Summary::of(&mut v).unwrap();
        assert_eq!((s.count, s.min, s.p50, s.max), (3, 1.0, 2.0, 3.0));
        assert!((s.mean - 2.0).abs() < 1e-9);
        assert!(Summary::of(&mut Vec::new()).is_none());
    }

    #[test]
    fn buckets_are_contiguous_and_cover_u64() {
        let mut expected_low = 0u64;
        for b in 0..BUCKETS {
            let (low, width) = bucket_range(b);
            assert_eq!(low, expected_low, "bucket {b}");
            assert_eq!(bucket_of(low), b);
            assert_eq!(bucket_of(low + (width - 1)), b);
            expected_low = low.wrapping_add(width);
        }
        assert_eq!(expected_low, 0, "last bucket ends at u64::MAX");
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn histogram_percentiles_within_error() {
        let mut h = Histogram::default();
        for v in 1..=10_000u64 {
            h.record(v);
        }
        assert_eq!(h.count(), 10_000);
        for p in [1.0, 5.0, 50.0, 90.0, 99.0] {
            let exact = (p / 100.0 * 10_000.0) as u64;
            let got = h.percentile(p).unwrap();
            let err = (got as f64 - exact as f64).abs() / exact as f64;
            assert!(err < 0.02, "p{p}: {got} vs {exact}");
        }
        assert_eq!(h.percentile(100.0), Some(10_000));
        assert_eq!(h.percentile(0.0), Some(1));
        let s = h.summary(1000.0).unwrap();
        assert_eq!(s.min, 0.001);
        assert_eq!(s.max, 10.0);
        assert!((s.mean - 5.0005).abs() < 1e-9);
    }

    #[test]
    fn histogram_empty_and_single() {
        let mut h = Histogram::default();
        assert_eq!(h.percentile(50.0), None);
        assert!(h.summary(1.0).is_none());
        h.record(123_456);
        assert_eq!(h.percentile(50.0), Some(123_456));
        h.record(u64::MAX);
        assert_eq!(h.percentile(100.0), Some(u64::MAX));
    }
}
