//! Serving HTTP over the node's tracked listener, with the timeouts `axum::serve` lacks.
//!
//! `axum::serve` sets no hyper timer, so hyper never times out a connection that trickles its
//! request headers (slowloris): a connection sending one header line every 20 s stayed open
//! for minutes. Here each connection is served by hyper-util's builder with a
//! [`HEADER_READ_TIMEOUT`]: the complete request head must arrive within it of the connection
//! opening, or of the previous response on a kept-alive connection (hyper starts the timer
//! whenever it waits for a request head), so an idle keep-alive connection is closed after it
//! too. WebSocket upgrades keep working (`with_upgrades`); an upgraded connection is no longer
//! HTTP and is not subject to it.

use std::future::Future;
use std::pin::pin;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::http::Request;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::watch;
use tower::Service;

use crate::connections::{PeerAddr, TrackedListener};

/// How long a connection may take to send a complete request head (PROTOCOL.md: 10 s).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `router` on `listener` until `shutdown` resolves, then stops accepting and lets open
/// connections finish (each told to close once its current request is answered). Returns when
/// the last connection has ended; callers bound that wait themselves.
pub async fn serve(
    mut listener: TrackedListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send,
) {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    // A send tells every connection to shut down gracefully; each holds a receiver, so
    // `closed()` resolves once the last one has ended.
    let (stop_tx, stop_rx) = watch::channel(());
    let mut shutdown = pin!(shutdown);
    loop {
        let (io, peer) = tokio::select! {
            accepted = axum::serve::Listener::accept(&mut listener) => accepted,
            () = &mut shutdown => break,
        };
        // A `Router` clone is one `Arc`: the routes were built once, before serving. Each
        // request carries its peer address, as `into_make_service_with_connect_info` would
        // (the development console mints tokens only for loopback peers).
        let router = router.clone();
        let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
            req.extensions_mut().insert(ConnectInfo(PeerAddr(peer)));
            router.clone().call(req)
        });
        let conn = builder
            .serve_connection(TokioIo::new(io), service)
            .with_upgrades();
        let mut stop_rx = stop_rx.clone();
        tokio::spawn(async move {
            let mut conn = pin!(conn);
            tokio::select! {
                result = conn.as_mut() => {
                    if let Err(e) = result {
                        tracing::trace!(error = %e, "connection ended with an error");
                    }
                    return;
                }
                _ = stop_rx.changed() => conn.as_mut().graceful_shutdown(),
            }
            if let Err(e) = conn.await {
                tracing::trace!(error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    drop(stop_rx);
    stop_tx.send_replace(());
    stop_tx.closed().await;
}
