//! The webhook metrics, labelled by `endpoint` (the configured endpoint names: few, fixed at
//! boot). The backlog gauges are set by the node holding the sender lease and 0 elsewhere, so
//! their sum over the nodes is the cluster's figure.

use prometheus::{
    HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

use super::reg;

/// Attempt durations: 5 ms to 30 s.
const BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Handles of the webhook metrics (cheap to clone).
#[derive(Clone)]
pub struct WebhookMetrics {
    /// Attempts by outcome: `sent` (acknowledged), `retry` (failed, retried later), `failed`
    /// (failed for good: kept for an operator).
    attempts: IntCounterVec,
    duration: HistogramVec,
    /// Deliveries waiting (new or retrying).
    pending: IntGaugeVec,
    /// Deliveries kept as failed.
    failed: IntGaugeVec,
    /// Age of the oldest waiting delivery.
    oldest: IntGaugeVec,
    /// 1 on the node that sends (holds the lease).
    sender: IntGauge,
    /// `message.created` events this node left to the reconcile pass because its queue to the
    /// outbox was full (the outbox could not be written fast enough, or at all).
    pub deferred: IntCounter,
    /// What this node's queue to the outbox holds.
    queue_bytes: IntGauge,
    /// Reconcile passes that finished a window (`webhooks/reconcile.rs`).
    pub reconcile_passes: IntCounter,
    /// Messages those passes read from the store (a chat's newest one, read to see whether
    /// anything is missing, counts too).
    pub reconcile_reads: IntCounter,
}

impl WebhookMetrics {
    pub(super) fn register(r: &Registry) -> Self {
        let gauge = |name: &str, help: &str| {
            reg(
                r,
                IntGaugeVec::new(Opts::new(name, help), &["endpoint"]).unwrap(),
            )
        };
        Self {
            attempts: reg(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "webhook_attempts_total",
                        "Webhook delivery attempts, by endpoint and outcome (sent, retry, failed)",
                    ),
                    &["endpoint", "outcome"],
                )
                .unwrap(),
            ),
            duration: reg(
                r,
                HistogramVec::new(
                    HistogramOpts::new(
                        "webhook_attempt_duration_seconds",
                        "Time of one webhook delivery attempt, by endpoint",
                    )
                    .buckets(BUCKETS.to_vec()),
                    &["endpoint"],
                )
                .unwrap(),
            ),
            pending: gauge(
                "webhook_pending",
                "Webhook deliveries waiting to be sent or retried, by endpoint",
            ),
            failed: gauge(
                "webhook_failed",
                "Webhook deliveries kept as failed (an operator may resend them), by endpoint",
            ),
            oldest: gauge(
                "webhook_oldest_pending_age_seconds",
                "Age of the oldest webhook delivery still waiting, by endpoint",
            ),
            sender: reg(
                r,
                IntGauge::new(
                    "webhook_sender",
                    "1 on the node that sends the cluster's webhooks (holds the lease)",
                )
                .unwrap(),
            ),
            deferred: reg(
                r,
                IntCounter::new(
                    "webhook_events_deferred_total",
                    "message.created events left to the reconcile pass because the queue to the \
                     webhook outbox was full",
                )
                .unwrap(),
            ),
            queue_bytes: reg(
                r,
                IntGauge::new(
                    "webhook_queue_bytes",
                    "Webhook events published on this node and not yet in the outbox, in bytes \
                     (KiB-rounded)",
                )
                .unwrap(),
            ),
            reconcile_passes: reg(
                r,
                IntCounter::new(
                    "webhook_reconcile_passes_total",
                    "Webhook reconcile passes that looked at every chat changed in their window",
                )
                .unwrap(),
            ),
            reconcile_reads: reg(
                r,
                IntCounter::new(
                    "webhook_reconcile_messages_read_total",
                    "Messages the webhook reconcile passes read from the store",
                )
                .unwrap(),
            ),
        }
    }

    /// Creates an endpoint's series at start (at 0), so dashboards and alerts see them before
    /// its first event.
    pub fn touch(&self, endpoint: &str) {
        for outcome in ["sent", "retry", "failed"] {
            self.outcome(endpoint, outcome);
        }
        self.duration(endpoint);
        self.set_backlog(endpoint, 0, 0, 0);
    }

    pub fn outcome(&self, endpoint: &str, outcome: &str) -> prometheus::IntCounter {
        self.attempts.with_label_values(&[endpoint, outcome])
    }

    pub fn duration(&self, endpoint: &str) -> prometheus::Histogram {
        self.duration.with_label_values(&[endpoint])
    }

    /// An endpoint's backlog: waiting, failed, and the oldest waiting one's age.
    pub fn set_backlog(&self, endpoint: &str, pending: u64, failed: u64, oldest_secs: i64) {
        self.pending
            .with_label_values(&[endpoint])
            .set(i64::try_from(pending).unwrap_or(i64::MAX));
        self.failed
            .with_label_values(&[endpoint])
            .set(i64::try_from(failed).unwrap_or(i64::MAX));
        self.oldest.with_label_values(&[endpoint]).set(oldest_secs);
    }

    pub fn set_sender(&self, held: bool) {
        self.sender.set(i64::from(held));
    }

    pub fn set_queue_bytes(&self, bytes: usize) {
        self.queue_bytes
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
    }

    /// The queue's bytes now (tests).
    pub fn queue_bytes(&self) -> i64 {
        self.queue_bytes.get()
    }
}
