//! Every metric Switchboard exports, in one registry, with the `switchboard_` prefix and unit
//! suffixes. Labels are of low cardinality only (event name, outcome, route template, operation,
//! status): never a user, chat or socket id. The node's name is a constant label on every series.
//!
//! Hot-path handles are resolved once at start-up ([`EventMetrics`], [`StoreMetrics`],
//! [`RouteMetrics`], the connection outcomes), so recording is an atomic add on a handle found by
//! index or by a lookup of a `&str` in a map built at start: no allocation, no lock, no label
//! hashing inside `prometheus`. The one exception is the first request of a given route with a
//! given status, which creates that series once (see [`RouteMetrics::record`]).
//!
//! `docs/operations.md` lists every metric; `tests/ops/check_ops.py` checks that each name a
//! dashboard panel or an alert uses is one a node really exports.
//!
//! Files: this one (the registry, client events and their labels, connections, presence,
//! dependencies), `metrics/outcomes.rs` (the `outcome` label, derived from the error table),
//! `metrics/store.rs` (per store operation), `metrics/http.rs` (per route template and status),
//! `metrics/tests.rs`.

use std::time::Duration;

mod desk;
mod http;
mod outcomes;
mod recovery;
mod store;
#[cfg(test)]
mod tests;
mod webhooks;

pub use desk::DeskMetrics;
pub use http::{HttpRoutes, RouteMetrics};
pub use outcomes::{OUTCOMES, outcome_index};
pub use recovery::{RECOVERY_OUTCOMES, RecoveryMetrics};
pub use store::StoreMetrics;
pub use webhooks::WebhookMetrics;

use crate::client_events::{ClientEvent, UNKNOWN_LABEL};
use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Buckets for handling latencies: 100 µs to 5 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// Why a Socket.IO handshake ended as it did: the `outcome` label of `connections_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionOutcome {
    Accepted = 0,
    /// Missing, malformed, expired or wrongly signed token.
    Unauthorized = 1,
    /// Refused because the node is draining.
    Draining = 2,
    /// Refused because the user holds `MAX_SOCKETS_PER_USER` sockets already.
    RateLimited = 3,
    /// A new session refused because the node holds `MAX_CONNECTIONS` sockets.
    Full = 4,
    /// A new session refused because of `MAX_HANDSHAKES_PER_SEC`.
    Throttled = 5,
    /// A resume whose session Redis did not answer for in time: its transport was closed so
    /// that the client retries with the same session.
    ResumeRetry = 6,
}

const CONNECTION_OUTCOMES: &[&str] = &[
    "accepted",
    "unauthorized",
    "draining",
    "rate_limited",
    "full",
    "throttled",
    "resume_retry",
];

/// The backing services `/readyz` depends on: the `dependency` label of `dependency_up`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dependency {
    Store = 0,
    /// The adapter and presence backend (Redis in a cluster, in-process for a single node).
    Adapter = 1,
}

const DEPENDENCIES: &[&str] = &["store", "adapter"];

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
    /// Sockets whose transport was closed because their token's `exp` (plus the leeway) passed.
    pub sockets_expired: IntCounter,
    /// Indexed like [`CONNECTION_OUTCOMES`].
    connections: Vec<IntCounter>,
    events: Vec<EventMetrics>,
    pub messages_saved: IntCounter,
    pub messages_emitted: IntCounter,
    pub reports_saved: IntCounter,
    /// Indexed like [`crate::store::StoreOp::ALL`], then `other`.
    store: Vec<StoreMetrics>,
    pub fanout_publishes: IntCounter,
    pub fanout_failures: IntCounter,
    /// Times the Redis subscriber lost messages and this node closed its transports.
    pub subscriber_gaps: IntCounter,
    pub fanout_duration: Histogram,
    pub presence_users_online: IntGauge,
    pub presence_reaped_users: IntCounter,
    /// `ok` and `error`.
    presence_heartbeats: [IntCounter; 2],
    presence_heartbeat_last_success: Gauge,
    /// By the route template axum matched, each made on its first request.
    http_routes: HttpRoutes,
    /// Indexed like [`DEPENDENCIES`].
    dependency_up: Vec<IntGauge>,
    pub draining: IntGauge,
    /// The soft open-file limit in force (every socket is one file): `file_limit.rs`.
    pub open_files_limit: IntGauge,
    /// Connection state recovery.
    pub recovery: RecoveryMetrics,
    /// Webhook deliveries, per endpoint.
    pub webhooks: WebhookMetrics,
    /// The support desk (removals).
    pub desk: DeskMetrics,
}

/// Histogram options with the handling-latency buckets.
fn latency(name: &str, help: &str) -> HistogramOpts {
    HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec())
}

/// Registers a collector and hands it back, so registration reads as one expression.
fn reg<T: prometheus::core::Collector + Clone + 'static>(r: &Registry, c: T) -> T {
    r.register(Box::new(c.clone()))
        .expect("metric names are unique");
    c
}

impl Metrics {
    /// [`Metrics::with_heartbeat_interval`] with a 5 s interval, for the unit tests.
    #[cfg(test)]
    fn new(node: &str) -> Self {
        Self::with_heartbeat_interval(node, Duration::from_secs(5))
    }

    /// Registers every metric. `node` becomes a constant label on all of them;
    /// `heartbeat_interval` is exported so alerts can tell a lagging reaper.
    pub fn with_heartbeat_interval(node: &str, heartbeat_interval: Duration) -> Self {
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
                latency(
                    "event_handling_duration_seconds",
                    "Time to handle a client event, by event",
                ),
                &["event"],
            )
            .unwrap(),
        );
        // One set per client event of the table, in its order, then `unknown`.
        let events = ClientEvent::ALL
            .iter()
            .map(|e| e.name())
            .chain([UNKNOWN_LABEL])
            .map(|e| EventMetrics {
                outcomes: OUTCOMES
                    .iter()
                    .map(|o| events_total.with_label_values(&[e, o]))
                    .collect(),
                duration: event_duration.with_label_values(&[e]),
            })
            .collect();

        let connections = reg(
            r,
            IntCounterVec::new(
                Opts::new(
                    "connections_total",
                    "Socket.IO handshakes, by outcome (accepted, or the refusal reason)",
                ),
                &["outcome"],
            )
            .unwrap(),
        );
        let connections = CONNECTION_OUTCOMES
            .iter()
            .map(|o| connections.with_label_values(&[o]))
            .collect();

        let store = store::register(r);

        let heartbeats = reg(
            r,
            IntCounterVec::new(
                Opts::new(
                    "presence_heartbeats_total",
                    "Presence heartbeats (renewal and reaping of dead nodes), by outcome",
                ),
                &["outcome"],
            )
            .unwrap(),
        );
        let presence_heartbeats = [
            heartbeats.with_label_values(&["ok"]),
            heartbeats.with_label_values(&["error"]),
        ];
        let presence_heartbeat_last_success = reg(
            r,
            Gauge::new(
                "presence_heartbeat_last_success_timestamp_seconds",
                "Unix time of this node's last successful presence heartbeat",
            )
            .unwrap(),
        );
        let interval = reg(r, Gauge::new(
            "presence_heartbeat_interval_seconds",
            "How often this node renews its presence and reaps dead nodes (HEARTBEAT_INTERVAL_SECS)",
        ).unwrap());
        interval.set(heartbeat_interval.as_secs_f64());

        let http_routes = http::register(r);

        let dependency_up = reg(r, IntGaugeVec::new(
            Opts::new("dependency_up", "1 while this node reaches the dependency (store, adapter), else 0; checked periodically and by /readyz"),
            &["dependency"],
        ).unwrap());
        let dependency_up = DEPENDENCIES
            .iter()
            .map(|d| dependency_up.with_label_values(&[d]))
            .collect();

        let build = reg(
            r,
            IntGauge::with_opts(
                Opts::new(
                    "build_info",
                    "Version and commit of the running binary (always 1)",
                )
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
            sockets_expired: reg(
                r,
                IntCounter::new(
                    "sockets_expired_total",
                    "Sockets whose transport was closed because their token expired (exp plus the leeway)",
                )
                .unwrap(),
            ),
            connections,
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
            store,
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
            subscriber_gaps: reg(
                r,
                IntCounter::new(
                    "adapter_subscriber_gaps_total",
                    "Times the Redis subscriber lost messages (a buffer overflowed), so this node \
                     closed every transport for its clients to resume from the recovery log",
                )
                .unwrap(),
            ),
            fanout_duration: reg(
                r,
                Histogram::with_opts(latency(
                    "adapter_publish_duration_seconds",
                    "Time to hand an emission to the adapter",
                ))
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
            presence_heartbeats,
            presence_heartbeat_last_success,
            http_routes,
            dependency_up,
            open_files_limit: reg(
                r,
                IntGauge::new(
                    "open_files_limit",
                    "The soft open-file limit this process runs with (every socket is one file)",
                )
                .unwrap(),
            ),
            draining: reg(
                r,
                IntGauge::new(
                    "draining",
                    "1 while this node drains (after SIGTERM), else 0",
                )
                .unwrap(),
            ),
            recovery: RecoveryMetrics::register(r),
            webhooks: WebhookMetrics::register(r),
            desk: DeskMetrics::register(r),
            registry,
        }
    }

    /// The handles for a client event (`None`, an event the protocol does not define, is
    /// counted as `unknown`). An index, not a name lookup: this runs for every event.
    pub fn event(&self, event: Option<ClientEvent>) -> &EventMetrics {
        &self.events[event.map_or(ClientEvent::ALL.len(), |e| e as usize)]
    }

    /// Counts a handshake.
    pub fn connection(&self, outcome: ConnectionOutcome) {
        self.connections[outcome as usize].inc();
    }

    /// Records a presence heartbeat's outcome.
    pub fn presence_heartbeat(&self, ok: bool) {
        self.presence_heartbeats[usize::from(!ok)].inc();
        if ok {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            self.presence_heartbeat_last_success.set(now.as_secs_f64());
        }
    }

    /// Presence heartbeats this node has finished, whatever their outcome: a test waits on it
    /// for "a heartbeat has passed" instead of sleeping.
    pub fn presence_heartbeats(&self) -> u64 {
        self.presence_heartbeats.iter().map(IntCounter::get).sum()
    }

    /// Records whether a dependency answered.
    pub fn dependency(&self, dependency: Dependency, up: bool) {
        self.dependency_up[dependency as usize].set(i64::from(up));
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
