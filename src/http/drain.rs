//! While the node drains, a request that would open a new Engine.IO session is answered `503`
//! with `Retry-After`, before Engine.IO sees it.
//!
//! Refusing the socket later, in the Socket.IO handshake middleware, would reach the client as
//! a `connect_error`, which socket.io-client treats as final: it does not reconnect after a
//! middleware refusal, so an unchanged frontend would stay offline. An HTTP error is a failed
//! transport instead: the client's engine retries with its reconnection back-off, and a load
//! balancer that retries on `503` (deploy/nginx/switchboard.conf: `proxy_next_upstream ...
//! http_503`) hands the request to another node at once. Requests within a session (`sid` in
//! the query) pass: the drain closes those sessions itself. The middleware's own refusal
//! (`realtime/handshake.rs`) stays for the narrow race of a session opened just before the
//! drain began.

use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::{AppError, ErrorCode};
use crate::metrics::ConnectionOutcome;
use crate::state::AppState;

/// What a refused client is told to wait, in seconds; socket.io-client's own back-off
/// (`reconnectionDelay`, 1 s by default) decides when it actually retries.
const RETRY_AFTER_SECS: u32 = 1;

/// `axum::middleware::from_fn_with_state` function: one atomic load per request while the node
/// serves normally.
pub async fn refuse_new_sessions(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    if state.is_draining()
        && req.uri().path().starts_with("/socket.io")
        && crate::http::slim::opens_session(req.uri())
    {
        state.metrics.connection(ConnectionOutcome::Draining);
        let mut response =
            AppError::new(ErrorCode::Unavailable, "this node is draining; reconnect")
                .into_response();
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
        return response;
    }
    next.run(req).await
}
