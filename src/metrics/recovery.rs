//! Connection state recovery metrics (`docs/recovery.md`): resume attempts by outcome, events
//! replayed, the recovery log's appends, failures, size and trim lag.

use prometheus::{Gauge, IntCounter, IntCounterVec, IntGauge, Opts, Registry};

use super::reg;

/// The `outcome` label of `recovery_attempts_total`: recovered, or why not (the names of
/// [`crate::recovery::Refusal`]).
pub const RECOVERY_OUTCOMES: [&str; 8] = [
    "recovered",
    "malformed",
    "unknown",
    "foreign",
    "expired",
    "too_far_behind",
    "unavailable",
    "rate_limited",
];

/// Connection state recovery's metrics (`docs/recovery.md`).
pub struct RecoveryMetrics {
    /// Indexed like [`RECOVERY_OUTCOMES`].
    attempts: Vec<IntCounter>,
    pub events_replayed: IntCounter,
    /// Recoverable emissions logged, and those the log could not take (sent without offset).
    pub log_appends: IntCounter,
    pub log_failures: IntCounter,
    pub log_entries: IntGauge,
    /// The recovery log's size in its byte budget, and this node's tail cache's (`docs/recovery.md`).
    pub log_bytes: IntGauge,
    pub tail_bytes: IntGauge,
    /// How much older than the window the log's oldest entry is (0 when trimming keeps up).
    pub trim_lag: Gauge,
}

impl RecoveryMetrics {
    pub(super) fn register(r: &Registry) -> Self {
        let attempts = reg(
            r,
            IntCounterVec::new(
                Opts::new(
                    "recovery_attempts_total",
                    "Handshakes that asked to resume a session, by outcome (recovered, or the refusal reason)",
                ),
                &["outcome"],
            )
            .unwrap(),
        );
        RecoveryMetrics {
            attempts: RECOVERY_OUTCOMES
                .iter()
                .map(|o| attempts.with_label_values(&[o]))
                .collect(),
            events_replayed: reg(
                r,
                IntCounter::new(
                    "recovery_events_replayed_total",
                    "Events sent to recovered sockets from the recovery log",
                )
                .unwrap(),
            ),
            log_appends: reg(
                r,
                IntCounter::new(
                    "recovery_log_appends_total",
                    "Recoverable emissions written to the recovery log",
                )
                .unwrap(),
            ),
            log_failures: reg(
                r,
                IntCounter::new(
                    "recovery_log_failures_total",
                    "Recoverable emissions the recovery log could not take (sent without an offset)",
                )
                .unwrap(),
            ),
            log_entries: reg(
                r,
                IntGauge::new("recovery_log_entries", "Entries in the recovery log").unwrap(),
            ),
            log_bytes: reg(
                r,
                IntGauge::new(
                    "recovery_log_bytes",
                    "The recovery log's size as its byte budget counts it (RECOVERY_LOG_MAX_BYTES)",
                )
                .unwrap(),
            ),
            tail_bytes: reg(
                r,
                IntGauge::new(
                    "recovery_tail_bytes",
                    "This node's cache of the recovery log's tail, in bytes (RECOVERY_TAIL_MAX_BYTES)",
                )
                .unwrap(),
            ),
            trim_lag: reg(
                r,
                Gauge::new(
                    "recovery_log_trim_lag_seconds",
                    "How much older than RECOVERY_WINDOW_SECS the recovery log's oldest entry is",
                )
                .unwrap(),
            ),
        }
    }

    /// Counts a resume attempt: `Ok` recovered, or the refusal.
    pub fn attempt(&self, outcome: Result<(), crate::recovery::Refusal>) {
        let label = outcome.err().map_or("recovered", |r| r.as_str());
        let i = RECOVERY_OUTCOMES
            .iter()
            .position(|o| *o == label)
            .unwrap_or(0);
        self.attempts[i].inc();
    }
}
