//! The layers around the router: the Socket.IO settings every adapter shares, CORS, and the
//! `/metrics` route.

use axum::Router;
use axum::http::{HeaderValue, Method, header};
use socketioxide::SocketIo;
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::config::Config;
use crate::state::AppState;

/// `GET /metrics`, on the main listener or on `METRICS_PORT`'s.
pub fn metrics_router(state: AppState) -> Router {
    Router::new()
        .route(
            "/metrics",
            axum::routing::get(
                |axum::extract::State(s): axum::extract::State<AppState>| async move {
                    (
                        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                        s.metrics.render(),
                    )
                },
            ),
        )
        .with_state(state)
}

/// Socket.IO settings shared by every adapter.
pub fn socket_io_builder(config: &Config) -> socketioxide::SocketIoBuilder {
    SocketIo::builder()
        .ping_interval(config.ping_interval)
        .ping_timeout(config.ping_timeout)
        // Bytes a connection may have waiting; past them it is closed (the packet count bound
        // below lets a few large replies, such as `chat:sync` pages, hold any amount for a
        // client that POSTs requests and never reads: docs/security.md).
        .max_buffer_bytes(config.socket_queue_bytes)
        // Each idle WebSocket keeps its read buffer; 256 bytes instead of the default 128 KiB
        // saves memory per connection. It holds a typing indicator, a read receipt or a short
        // chat message; larger frames still arrive, in more reads (the buffer grows as needed).
        .ws_read_buffer_size(256)
        // Packets a connection may have waiting before `emit` refuses more (socketioxide's
        // default is 128). The queue grows only while packets wait, so an idle connection pays
        // nothing for it; a burst to one socket (hundreds of reports at once, a busy room whose
        // writes are being coalesced) must not lose live deliveries.
        .max_buffer_size(1024)
        // One Socket.IO packet is at most 256 KiB on every transport (PROTOCOL.md), refused
        // before more is buffered, authenticated or not. `max_payload` covers long-polling
        // bodies only (413); a WebSocket has its own limits (64 MiB a message and 16 MiB a
        // frame by default): a frame whose header announces more is refused before its payload
        // is read, and a fragmented message as soon as its fragments add up to more; either
        // closes the connection.
        .max_payload(MAX_PACKET_BYTES as u64)
        .ws_max_message_size(MAX_PACKET_BYTES)
        .ws_max_frame_size(MAX_PACKET_BYTES)
}

/// The largest Socket.IO packet a client may send, on any transport.
pub const MAX_PACKET_BYTES: usize = 256 * 1024;

/// The `CORS_ORIGINS` policy: `*`, or a comma-separated list of origins.
pub fn cors(origins: &str) -> CorsLayer {
    let layer = CorsLayer::new()
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PATCH,
            Method::DELETE,
            Method::OPTIONS,
        ])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
        // A browser frontend must be able to read how long to wait after a `429`.
        .expose_headers([header::RETRY_AFTER]);
    if origins.trim() == "*" {
        return layer.allow_origin(AllowOrigin::any());
    }
    let list: Vec<HeaderValue> = origins
        .split(',')
        .map(str::trim)
        .filter(|o| !o.is_empty())
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    layer
        .allow_origin(AllowOrigin::list(list))
        .allow_credentials(true)
}
