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

/// Crate families whose `debug` and `trace` events contain raw packets or commands: a crate
/// whose name starts with one of these (`engineioxide_core`, `socketioxide_redis`,
/// `tokio_tungstenite`...) is one of them, so a crate split or added upstream is covered too.
const PACKET_LOGGERS: &[&str] = &[
    "socketioxide",
    "engineioxide",
    "tungstenite",
    "tokio_tungstenite",
    "fred",
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
    *meta.level() > Level::INFO && is_packet_logger(meta.target())
}

/// Is `target` (a module path) in one of the [`PACKET_LOGGERS`] families?
fn is_packet_logger(target: &str) -> bool {
    let krate = target.split("::").next().unwrap_or(target);
    PACKET_LOGGERS
        .iter()
        .any(|family| krate.starts_with(family))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_crate_of_a_packet_logging_family_is_kept_quiet() {
        for target in [
            "engineioxide",
            "engineioxide::transport::polling",
            "engineioxide_core::payload::encoder",
            "socketioxide_core::adapter",
            "socketioxide_redis",
            "socketioxide_parser_common::de",
            "tokio_tungstenite",
            "fred::protocol::connection",
        ] {
            assert!(is_packet_logger(target), "{target}");
        }
        for target in ["switchboard::realtime", "hyper::proto", "mongodb::cmap"] {
            assert!(!is_packet_logger(target), "{target}");
        }
    }
}
