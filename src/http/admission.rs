//! Which requests may open a new Engine.IO session: every one while the node serves normally
//! and has room, none while it drains, is full (`MAX_CONNECTIONS`) or is taking more new
//! sessions than `MAX_HANDSHAKES_PER_SEC`. A refusal is `503` with `Retry-After`, answered
//! before Engine.IO sees the request, in microseconds: a node that cannot take a client right
//! now says so fast instead of letting its handshake time out.
//!
//! Refusing the socket later, in the Socket.IO handshake middleware, would reach the client as
//! a `connect_error`, which socket.io-client treats as final: it does not reconnect after a
//! middleware refusal, so an unchanged frontend would stay offline. An HTTP error is a failed
//! transport instead: the client's engine retries with its reconnection back-off (1 s, then
//! doubling up to 5 s, randomised by half), and a load balancer that retries on `503`
//! (deploy/nginx/switchboard.conf: `proxy_next_upstream ... http_503`) hands the request to
//! another node at once. Requests within a session (`sid` in the query) always pass: the drain
//! closes those sessions itself. The middleware's own drain refusal (`realtime/handshake.rs`)
//! stays for the narrow race of a session opened just before the drain began.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::{AppError, ErrorCode};
use crate::metrics::ConnectionOutcome;
use crate::state::AppState;
use crate::state::rate_limit::RateLimiter;

/// What a refused client is told to wait, in seconds; socket.io-client's own back-off
/// (`reconnectionDelay`, 1 s by default) decides when it actually retries.
const RETRY_AFTER_SECS: u32 = 1;

/// The admission rules of one node.
pub struct Admission {
    state: AppState,
    /// `MAX_CONNECTIONS`: the most Socket.IO sockets this node holds (new sessions beyond are
    /// refused; sockets already connected are never dropped for it). Unset, the open-file
    /// limit less a reserve ([`default_max_connections`]).
    max_connections: Option<u64>,
    /// `MAX_HANDSHAKES_PER_SEC`: a token bucket of new sessions, a second's worth deep.
    per_sec: Option<RateLimiter>,
}

impl Admission {
    /// The rules the node's settings ask for.
    pub fn new(state: AppState) -> Arc<Self> {
        let max_connections =
            state.config.max_connections.map(u64::from).or_else(|| {
                crate::file_limit::raise().map(|(soft, _)| default_max_connections(soft))
            });
        let per_sec = state
            .config
            .max_handshakes_per_sec
            .map(|rate| RateLimiter::with_burst(rate, rate));
        Arc::new(Self {
            state,
            max_connections,
            per_sec,
        })
    }

    /// Why a new session may not open now, if it may not.
    fn refusal(&self) -> Option<(ConnectionOutcome, &'static str)> {
        if self.state.drain.is_draining() {
            return Some((
                ConnectionOutcome::Draining,
                "this node is draining; reconnect",
            ));
        }
        if let Some(max) = self.max_connections {
            let held = u64::try_from(self.state.metrics.sockets_connected.get()).unwrap_or(0);
            if held >= max {
                return Some((
                    ConnectionOutcome::Full,
                    "this node holds MAX_CONNECTIONS sockets; reconnect",
                ));
            }
        }
        if let Some(bucket) = &self.per_sec
            && !bucket.allow()
        {
            return Some((
                ConnectionOutcome::Throttled,
                "this node takes no more new connections this second; reconnect",
            ));
        }
        None
    }
}

/// The sockets a node with `open_files` file descriptors may hold when `MAX_CONNECTIONS` is
/// unset: every socket is a descriptor, and so are Redis and MongoDB connections, REST
/// connections, uploads and the refusals themselves (each a connection accepted and closed).
/// A node at its open-file limit cannot even accept a connection to refuse it: axum's accept
/// loop sleeps a second on `EMFILE`, every handshake in the queue times out and is retried,
/// and the retries keep the node there (issue 28: 100,000 clients on 6 nodes, the survivors
/// of a kill each at 20,000 sockets under a 20,000-file limit, 766,387 reconnect attempts).
/// A quarter of the descriptors, at most 512, stay free for all that.
pub fn default_max_connections(open_files: u64) -> u64 {
    open_files - (open_files / 4).min(512)
}

/// `axum::middleware::from_fn_with_state` function: for requests within a session, nothing;
/// for a new session, one atomic load per rule (and one uncontended lock with a rate).
pub async fn admit(State(admission): State<Arc<Admission>>, req: Request, next: Next) -> Response {
    if req.uri().path().starts_with("/socket.io")
        && crate::http::slim::opens_session(req.uri())
        && let Some((outcome, why)) = admission.refusal()
    {
        admission.state.metrics.connection(outcome);
        let mut response = AppError::new(ErrorCode::Unavailable, why).into_response();
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
        return response;
    }
    next.run(req).await
}
