//! Logging: `tracing` with `RUST_LOG` filters (default `info`), readable on a terminal, JSON
//! lines elsewhere (`LOG_FORMAT` overrides the terminal check).
//!
//! Logs never carry a token, a secret or a message body. Our own events log ids, codes and
//! timings only; every client event runs inside an `event` span with `node`, `socket_id`,
//! `user_id` and `event` (see `realtime::event_span`), which JSON lines carry as `span`.
//! The Socket.IO, Engine.IO and WebSocket crates log whole packets (the handshake's token,
//! message bodies) at `debug` and `trace`, so their events are kept to `info` and above unless
//! `RUST_LOG` names one of them explicitly (a local debugging session that accepts the leak).

use std::io::IsTerminal;

use tracing::{Level, Metadata};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::LogFormat;

/// Crates whose `debug` and `trace` events contain raw packets.
const PACKET_LOGGERS: &[&str] = &[
    "socketioxide",
    "engineioxide",
    "tungstenite",
    "tokio_tungstenite",
];

/// Installs the global subscriber. `format` overrides the terminal check.
pub fn init(format: Option<LogFormat>) {
    let spec = std::env::var(EnvFilter::DEFAULT_ENV).unwrap_or_default();
    let filter = match spec.trim() {
        "" => EnvFilter::new("info"),
        spec => EnvFilter::try_new(spec).unwrap_or_else(|_| EnvFilter::new("info")),
    };
    let format = format.unwrap_or(if std::io::stderr().is_terminal() {
        LogFormat::Pretty
    } else {
        LogFormat::Json
    });
    let payloads_allowed = PACKET_LOGGERS.iter().any(|c| spec.contains(c));
    let no_packets = filter_fn(move |meta| payloads_allowed || !logs_packets(meta));
    let registry = tracing_subscriber::registry().with(filter).with(no_packets);
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Pretty => registry.with(fmt.compact()).try_init(),
        LogFormat::Json => registry
            .with(fmt.json().flatten_event(true).with_current_span(true))
            .try_init(),
    };
}

/// Is this a `debug` or `trace` event of a crate that logs raw packets?
fn logs_packets(meta: &Metadata<'_>) -> bool {
    *meta.level() > Level::INFO
        && PACKET_LOGGERS.iter().any(|c| {
            meta.target()
                .strip_prefix(c)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with("::"))
        })
}
