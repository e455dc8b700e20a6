//! Switchboard: a horizontally scaled Socket.IO support-chat server.
//!
//! Users chat with support staff in real time (messages, typing, read receipts, presence), and
//! staff push report messages to users. The wire contract is `PROTOCOL.md` (kept in the shared
//! folder beside the repository); this crate serves all of it, on one node or as a cluster of
//! nodes sharing Redis (`docs/cluster.md`).
//!
//! # Layout
//!
//! - [`app`]: assembly. Picks the backends, binds, runs until stopped, drains. The only module
//!   that names a concrete store, presence or adapter.
//! - [`config`]: every setting, as environment variable and flag.
//! - [`error`]: the error-code table shared by REST and socket acks.
//! - [`auth`]: JWT verification, the handshake check, the REST extractor, file URL signatures.
//! - [`domain`]: chats, messages, reports and the validated inputs that create them.
//! - [`service`]: the use cases both transports share (authorize, save, then emit).
//! - [`realtime`]: the Socket.IO handshake and events, one file per event group.
//! - [`http`]: the REST API, one file per resource.
//! - [`store`]: the persistence seam, its embedded (SQLite) implementation and its MongoDB
//!   implementation (`docs/mongodb.md`).
//! - [`presence`]: who is online; in-memory (one node) and Redis (cluster-wide) implementations.
//! - [`recovery`]: connection state recovery: sessions and the log of recoverable emissions,
//!   in Redis or the embedded SQLite file (`docs/recovery.md`).
//! - [`connections`]: the TCP connections a drain closes in paced batches.
//! - [`cluster`]: rooms, the fan-out seam over socketioxide adapters, and cluster mode over
//!   Redis (adapter, re-subscription, outage fallback and replay).
//! - [`metrics`]: every Prometheus metric.
//!
//! Dependencies point one way: `realtime` and `http` call `service`, which uses the `store`,
//! `presence` and `cluster` traits; only `app` chooses implementations.

pub mod app;
pub mod auth;
pub mod cluster;
pub mod config;
pub mod connections;
pub mod domain;
pub mod error;
pub mod http;
pub mod metrics;
pub mod presence;
pub mod realtime;
pub mod recovery;
pub mod service;
pub mod store;
pub mod telemetry;

pub use app::{AppState, Application};
pub use config::Config;
