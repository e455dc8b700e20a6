//! Latency histograms (microseconds) and the one process-wide clock that send times are
//! measured against, so a timestamp can travel inside a message or an ack id.

use std::sync::OnceLock;
use std::time::Instant;

use hdrhistogram::Histogram;
use serde_json::{Value, json};

static EPOCH: OnceLock<Instant> = OnceLock::new();

/// Microseconds since this process started measuring.
pub fn now_us() -> u64 {
    EPOCH.get_or_init(Instant::now).elapsed().as_micros() as u64
}

/// A histogram of 1 µs .. 60 s at 3 significant digits.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds")
}

/// p50 / p99 / max in milliseconds.
pub fn summary(h: &Histogram<u64>) -> Value {
    let ms = |v: u64| (v as f64 / 1000.0 * 100.0).round() / 100.0;
    json!({
        "count": h.len(),
        "p50Ms": ms(h.value_at_quantile(0.50)),
        "p90Ms": ms(h.value_at_quantile(0.90)),
        "p99Ms": ms(h.value_at_quantile(0.99)),
        "maxMs": ms(h.max()),
    })
}
