//! Store metrics: latency and failures per [`StoreOp`], one series per operation.

use prometheus::{Histogram, HistogramVec, IntCounter, IntCounterVec, Opts, Registry};

use super::{Metrics, latency, reg};
use crate::store::StoreOp;

/// The `operation` label of store metrics: every [`StoreOp`], then `other`, which only a lookup
/// by an unknown name lands on (nothing in the server does; the series is kept so dashboards
/// that sum over operations keep their shape).
const OTHER_STORE_OPERATION: &str = "other";

/// Pre-resolved handles for one store operation.
#[derive(Clone)]
pub struct StoreMetrics {
    pub duration: Histogram,
    pub errors: IntCounter,
}

/// Registers the store metrics; the handles are indexed like [`StoreOp::ALL`], then `other`.
pub(super) fn register(r: &Registry) -> Vec<StoreMetrics> {
    let store_duration = reg(
        r,
        HistogramVec::new(
            latency(
                "store_operation_duration_seconds",
                "Store operation latency, by operation",
            ),
            &["operation"],
        )
        .unwrap(),
    );
    let store_errors = reg(
        r,
        IntCounterVec::new(
            Opts::new(
                "store_errors_total",
                "Store operations that failed, by operation",
            ),
            &["operation"],
        )
        .unwrap(),
    );
    StoreOp::ALL
        .iter()
        .map(|op| op.name())
        .chain([OTHER_STORE_OPERATION])
        .map(|op| StoreMetrics {
            duration: store_duration.with_label_values(&[op]),
            errors: store_errors.with_label_values(&[op]),
        })
        .collect()
}

impl Metrics {
    /// The handles for a store operation.
    pub fn store_operation(&self, op: StoreOp) -> &StoreMetrics {
        &self.store[op as usize]
    }

    /// The handles for a store operation by its label (unknown names share `other`).
    #[cfg(test)]
    pub(super) fn store(&self, operation: &str) -> &StoreMetrics {
        let i = StoreOp::ALL
            .iter()
            .position(|o| o.name() == operation)
            .unwrap_or(StoreOp::ALL.len());
        &self.store[i]
    }
}
