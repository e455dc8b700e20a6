//! Every metric Switchboard exports, in one registry, with the `switchboard_` prefix and unit
//! suffixes. Labels are of low cardinality only (event name, outcome, route template, operation):
//! never a user, chat or socket id.
//!
//! Hot-path handles are resolved once at start-up (see [`EventMetrics`]), so recording an event
//! is an atomic add: no allocation, no label lookup, no lock.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts,
    Registry, TextEncoder,
};

/// Buckets for handling latencies: 100 µs to 5 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// The client events we count by name; anything else is counted as `unknown`.
pub const EVENTS: &[&str] = &[
    "message:send",
    "user:typing:start",
    "user:typing:stop",
    "message:read",
    "user:online",
    "joinUserRoom",
    "sendReportMessage",
    "report:read",
    "chat:sync",
    "unknown",
];

/// The outcome label of an event: `ok` or an error code in lower case.
pub const OUTCOMES: &[&str] = &[
    "ok",
    "unauthorized",
    "forbidden",
    "validation",
    "not_found",
    "rate_limited",
    "payload_too_large",
    "unavailable",
    "internal",
];

/// Pre-resolved handles for one event name.
pub struct EventMetrics {
    /// One counter per outcome, indexed like [`OUTCOMES`].
    pub outcomes: Vec<IntCounter>,
    pub duration: Histogram,
}

/// All metrics of a node.
pub struct Metrics {
    registry: Registry,
    pub sockets_connected: IntGauge,
    pub connections: IntCounterVec,
    events: Vec<EventMetrics>,
    pub messages_saved: IntCounter,
    pub messages_emitted: IntCounter,
    pub reports_saved: IntCounter,
    pub store_duration: HistogramVec,
    pub store_errors: IntCounterVec,
    pub fanout_publishes: IntCounter,
    pub fanout_failures: IntCounter,
    pub fanout_duration: Histogram,
    pub presence_users_online: IntGauge,
    pub presence_reaped_users: IntCounter,
    pub http_requests: IntCounterVec,
    pub http_duration: HistogramVec,
}

fn reg<T: prometheus::core::Collector + Clone + 'static>(r: &Registry, c: T) -> T {
    r.register(Box::new(c.clone()))
        .expect("metric names are unique");
    c
}

impl Metrics {
    /// Registers every metric. `node` becomes a constant label on all of them.
    pub fn new(node: &str) -> Self {
        let labels = std::iter::once(("node".to_owned(), node.to_owned())).collect();
        let registry =
            Registry::new_custom(Some("switchboard".into()), Some(labels)).expect("valid prefix");
        let r = &registry;
        let events_total = reg(
            r,
            IntCounterVec::new(
                Opts::new(
                    "events_received_total",
                    "Client events received, by event and outcome",
                ),
                &["event", "outcome"],
            )
            .unwrap(),
        );
        let event_duration = reg(
            r,
            HistogramVec::new(
                HistogramOpts::new(
                    "event_handling_duration_seconds",
                    "Time to handle a client event",
                )
                .buckets(LATENCY_BUCKETS.to_vec()),
                &["event"],
            )
            .unwrap(),
        );
        let events = EVENTS
            .iter()
            .map(|e| EventMetrics {
                outcomes: OUTCOMES
                    .iter()
                    .map(|o| events_total.with_label_values(&[e, o]))
                    .collect(),
                duration: event_duration.with_label_values(&[e]),
            })
            .collect();
        let build = reg(
            r,
            IntGauge::with_opts(
                Opts::new("build_info", "Version and commit of the running binary")
                    .const_label("version", env!("CARGO_PKG_VERSION"))
                    .const_label(
                        "commit",
                        option_env!("SWITCHBOARD_COMMIT").unwrap_or("unknown"),
                    ),
            )
            .unwrap(),
        );
        build.set(1);
        Self {
            sockets_connected: reg(
                r,
                IntGauge::new("sockets_connected", "Sockets connected to this node now").unwrap(),
            ),
            connections: reg(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "connections_total",
                        "Socket.IO handshakes, by outcome (accepted, or the refusal reason)",
                    ),
                    &["outcome"],
                )
                .unwrap(),
            ),
            events,
            messages_saved: reg(
                r,
                IntCounter::new(
                    "messages_saved_total",
                    "Chat messages saved (retries excluded)",
                )
                .unwrap(),
            ),
            messages_emitted: reg(
                r,
                IntCounter::new(
                    "messages_emitted_total",
                    "message:new emissions sent to the fan-out",
                )
                .unwrap(),
            ),
            reports_saved: reg(
                r,
                IntCounter::new("reports_saved_total", "Report messages saved").unwrap(),
            ),
            store_duration: reg(
                r,
                HistogramVec::new(
                    HistogramOpts::new(
                        "store_operation_duration_seconds",
                        "Store operation latency",
                    )
                    .buckets(LATENCY_BUCKETS.to_vec()),
                    &["operation"],
                )
                .unwrap(),
            ),
            store_errors: reg(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "store_errors_total",
                        "Store operations that failed, by operation",
                    ),
                    &["operation"],
                )
                .unwrap(),
            ),
            fanout_publishes: reg(
                r,
                IntCounter::new(
                    "adapter_publishes_total",
                    "Room emissions handed to the adapter",
                )
                .unwrap(),
            ),
            fanout_failures: reg(
                r,
                IntCounter::new(
                    "adapter_failures_total",
                    "Room emissions the adapter failed to publish",
                )
                .unwrap(),
            ),
            fanout_duration: reg(
                r,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "adapter_publish_duration_seconds",
                        "Time to hand an emission to the adapter",
                    )
                    .buckets(LATENCY_BUCKETS.to_vec()),
                )
                .unwrap(),
            ),
            presence_users_online: reg(
                r,
                IntGauge::new(
                    "presence_users_online",
                    "Distinct users online in the cluster (as last seen by this node)",
                )
                .unwrap(),
            ),
            presence_reaped_users: reg(
                r,
                IntCounter::new(
                    "presence_reaped_users_total",
                    "Users set offline because their node died",
                )
                .unwrap(),
            ),
            http_requests: reg(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "http_requests_total",
                        "HTTP requests, by route template and status",
                    ),
                    &["route", "status"],
                )
                .unwrap(),
            ),
            http_duration: reg(
                r,
                HistogramVec::new(
                    HistogramOpts::new(
                        "http_request_duration_seconds",
                        "HTTP request latency by route template",
                    )
                    .buckets(LATENCY_BUCKETS.to_vec()),
                    &["route"],
                )
                .unwrap(),
            ),
            registry,
        }
    }

    /// The handles for a client event (unknown names share `unknown`).
    pub fn event(&self, name: &str) -> &EventMetrics {
        let i = EVENTS
            .iter()
            .position(|e| *e == name)
            .unwrap_or(EVENTS.len() - 1);
        &self.events[i]
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .expect("text encoding cannot fail");
        String::from_utf8(buf).expect("the text format is UTF-8")
    }
}

/// The outcome index for [`EventMetrics::outcomes`].
pub fn outcome_index(code: Option<crate::error::ErrorCode>) -> usize {
    use crate::error::ErrorCode::*;
    match code {
        None => 0,
        Some(Unauthorized) => 1,
        Some(Forbidden) => 2,
        Some(Validation) => 3,
        Some(NotFound) => 4,
        Some(RateLimited) => 5,
        Some(PayloadTooLarge) => 6,
        Some(Unavailable) => 7,
        Some(Internal) => 8,
    }
}
