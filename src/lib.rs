//! Switchboard: a horizontally scaled Socket.IO support-chat server.
//!
//! Users chat with support staff in real time (messages, typing, read receipts, presence), and
//! staff push report messages to users. The wire contract is `PROTOCOL.md` (kept in the shared
//! folder beside the repository); this crate serves all of it, on one node or as a cluster of
//! nodes sharing Redis (`docs/cluster.md`).
//!
//! # Layout
//!
//! From the top of the dependency graph down; a module uses only modules below it.
//!
//! - [`app`]: assembly. Picks the backends, builds the [`AppState`], binds, runs until stopped,
//!   drains. The only module that names a concrete store, presence or adapter; nothing imports
//!   it (`main` and the tests use it through [`Application`]).
//! - [`http`]: the REST API, one file per resource (and, in development only, the console that
//!   `GET /` serves: `http/console.rs`, its page in `http/console/`); [`realtime`]: the
//!   Socket.IO handshake, the dispatcher, the replies, one file per event group. The two transports: each parses
//!   its input, calls a use case in `service`, and shapes the answer. Neither imports the other.
//! - [`service`]: the use cases both transports share (authorize, save, then emit), one type
//!   per group, each borrowing only the seams it works through (`state.chats()`,
//!   `state.reports()`, ...); [`service::events`] names the server events and their payloads,
//!   `service/emit.rs` is the one emission path.
//! - [`state`]: the node's shared state ([`AppState`]: the seams as traits, the keys, the
//!   metrics, the typing map, the token expiries, the pending handshakes), assembly with no
//!   use case of its own, and each socket's session.
//! - [`ordering`]: one socket's events in arrival order, their saves and emissions too; each
//!   event's place is a [`ordering::Turn`] handed explicitly to its use case.
//! - [`paging`]: the one parser for `limit`, `seq` bounds and cursors.
//! - [`client_events`]: the table of client events (name, metric label, rate class, reply).
//! - [`auth`]: JWT verification, the REST extractor (for any state lending a `Verifier`),
//!   file URL signatures.
//! - [`cluster`]: rooms, the fan-out seam over socketioxide adapters, and cluster mode over
//!   Redis (adapter, re-subscription, outage fallback and replay).
//! - [`presence`]: who is online; in-memory (one node) and Redis (cluster-wide).
//! - [`recovery`]: connection state recovery: sessions and the log of recoverable emissions,
//!   in Redis or the embedded SQLite file (`docs/recovery.md`).
//! - [`webhooks`]: Standard Webhooks to the product's backend: the publishing seam `state`
//!   holds, the outbox (SQLite or MongoDB), the senders, the cluster lease, `chat.unread`
//!   (`docs/webhooks.md`).
//! - [`store`]: the persistence seam, its embedded (SQLite) implementation and its MongoDB
//!   implementation (`docs/mongodb.md`), and `TimedStore`, the timing decorator the use cases
//!   reach it through.
//! - [`metrics`]: every Prometheus metric (event labels from `client_events`).
//! - [`domain`]: chats, messages, reports and the validated inputs that create them;
//!   [`error`]: the error-code table shared by REST and socket acks.
//! - [`connections`]: the TCP connections a drain closes in paced batches, and each one's peer
//!   address; [`serve`]: HTTP over them, with a header-read timeout; [`config`]: every
//!   setting; [`telemetry`]: logging; [`private_files`]: `DATA_DIR` modes (`0700`/`0600`);
//!   [`file_limit`]: the open-file limit, raised to the hard one at start-up; [`batch`]: the
//!   natural batching of backend calls that Redis presence and recovery share.
//!
//! So dependencies point one way: `app` -> `http` | `realtime` -> `service` -> `state` ->
//! (`ordering`, `auth`, `cluster`, `webhooks`, `presence`, `recovery`, `store`, `metrics`) -> `domain` -> `error`;
//! `paging` and `client_events` sit below the transports and `metrics`. Only `app` chooses
//! implementations; everything else sees the `Store`, `Presence` and `Fanout` traits.

pub mod app;
pub mod auth;
pub mod batch;
pub mod client_events;
pub mod cluster;
pub mod config;
pub mod connections;
pub mod domain;
pub mod error;
pub mod file_limit;
pub mod http;
pub mod metrics;
pub mod ordering;
pub mod paging;
pub mod presence;
pub mod private_files;
pub mod realtime;
pub mod recovery;
pub mod serve;
pub mod service;
pub mod state;
pub mod store;
pub mod telemetry;
pub mod webhooks;

pub use app::Application;
pub use config::Config;
pub use state::AppState;
