//! Serving HTTP over the node's tracked listener, with the timeouts `axum::serve` lacks.
//!
//! `axum::serve` sets no hyper timer, so hyper never times out a connection that trickles its
//! request headers (slowloris): a connection sending one header line every 20 s stayed open
//! for minutes. Here each connection is served by hyper-util's builder with three deadlines:
//!
//! - [`HEADER_READ_TIMEOUT`]: the complete request head must arrive within it of the connection
//!   opening, or of the previous response on a kept-alive connection (hyper starts the timer
//!   whenever it waits for a request head), so an idle keep-alive connection is closed after it
//!   too.
//! - the request deadline ([`Limits::request`], `REQUEST_TIMEOUT_SECS`): the whole request, head
//!   and body, must arrive within it of the connection starting to wait for it (its opening, or
//!   the previous response sent: the same start as the header timeout's). Hyper has no body
//!   timeout, so 200 anonymous polling POSTs trickling a byte every 10 s held their connections
//!   (and +82 MB) for as long as they liked. The body is wrapped in [`DeadlineBody`]: past the deadline its
//!   next read fails, the handler's answer is replaced by a `400`, and hyper closes the
//!   connection (the body was not read to its end). `POST /api/uploads` gets
//!   [`Limits::upload`] (`UPLOAD_TIMEOUT_SECS`) instead: 10 MiB over a slow phone link.
//! - a write stall ([`Limits::request`] again): a write to the connection that makes no
//!   progress for that long fails and the connection ends, so a client that stops reading a
//!   response (a download, a long-poll answer) or its WebSocket does not hold it forever.
//!
//! WebSocket upgrades keep working (`with_upgrades`); an upgraded connection is no longer HTTP
//! and has no request deadline (only the write stall). A long-poll `GET` waits for its answer as
//! long as Engine.IO says: the deadline covers receiving the request, never the response wait.

use std::future::Future;
use std::io;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderValue, Method, Request, header};
use axum::response::IntoResponse;
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::watch;
use tokio::time::{Instant, Sleep};
use tower::Service;

use crate::connections::{PeerAddr, TrackedListener};
use crate::error::AppError;

/// How long a connection may take to send a complete request head (PROTOCOL.md: 10 s).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// The deadlines of one listener (see the module doc).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// A whole request (head and body), and the longest a write may make no progress.
    pub request: Duration,
    /// A whole `POST /api/uploads` request.
    pub upload: Duration,
}

impl Limits {
    /// The deadlines of `config` (`REQUEST_TIMEOUT_SECS`, `UPLOAD_TIMEOUT_SECS`).
    pub fn from_config(config: &crate::config::Config) -> Self {
        Self {
            request: config.request_timeout,
            upload: config.upload_timeout,
        }
    }
}

/// Serves `router` on `listener` until `shutdown` resolves, then stops accepting and lets open
/// connections finish (each told to close once its current request is answered). Returns when
/// the last connection has ended; callers bound that wait themselves.
pub async fn serve(
    mut listener: TrackedListener,
    router: Router,
    limits: Limits,
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
        let accepted = Instant::now();
        // When the connection last started waiting for a request head, in ms after `accepted`:
        // at the accept, then whenever a response has been sent (its body dropped).
        let idle_since = Arc::new(AtomicU64::new(0));
        let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
            req.extensions_mut().insert(ConnectInfo(PeerAddr(peer)));
            let allowed = if req.method() == Method::POST && req.uri().path() == "/api/uploads" {
                limits.upload
            } else {
                limits.request
            };
            let head_started = accepted + Duration::from_millis(idle_since.load(Ordering::Relaxed));
            let timed_out = Arc::new(AtomicBool::new(false));
            let req = req.map(|body| {
                Body::new(DeadlineBody {
                    inner: body,
                    deadline: head_started + allowed,
                    sleep: None,
                    timed_out: timed_out.clone(),
                })
            });
            let called = router.clone().call(req);
            let idle_since = idle_since.clone();
            async move {
                let mut response = called.await?;
                if timed_out.load(Ordering::Relaxed) {
                    response = AppError::validation(format!(
                        "the request did not arrive within {} s",
                        allowed.as_secs()
                    ))
                    .into_response();
                    response
                        .headers_mut()
                        .insert(header::CONNECTION, HeaderValue::from_static("close"));
                }
                let mark = MarkSent {
                    accepted,
                    idle_since,
                };
                Ok::<_, std::convert::Infallible>(
                    response.map(|body| Body::new(SentBody { inner: body, mark })),
                )
            }
        });
        let io = StallGuard {
            inner: io,
            limit: limits.request,
            stalled: None,
        };
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

/// A request body that fails once its request's deadline passes.
struct DeadlineBody {
    inner: Incoming,
    deadline: Instant,
    /// Armed the first time the body has nothing to give (a body that arrives at once, or an
    /// empty one, never allocates a timer).
    sleep: Option<Pin<Box<Sleep>>>,
    /// Set when the deadline cut the body off, so the answer can say so.
    timed_out: Arc<AtomicBool>,
}

/// The error a late body's read ends with.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within the request deadline")]
pub struct BodyTimedOut;

impl HttpBody for DeadlineBody {
    type Data = bytes::Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        if Instant::now() >= this.deadline {
            this.timed_out.store(true, Ordering::Relaxed);
            return Poll::Ready(Some(Err(BodyTimedOut.into())));
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => Poll::Ready(frame.map(|f| f.map_err(Into::into))),
            Poll::Pending => {
                let deadline = this.deadline;
                let sleep = this
                    .sleep
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                match sleep.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        this.timed_out.store(true, Ordering::Relaxed);
                        Poll::Ready(Some(Err(BodyTimedOut.into())))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Records, when dropped (hyper drops a response body once it is sent, or the connection
/// ends), that the connection waits for its next request head from now.
struct MarkSent {
    accepted: Instant,
    idle_since: Arc<AtomicU64>,
}

impl Drop for MarkSent {
    fn drop(&mut self) {
        let ms = self.accepted.elapsed().as_millis() as u64;
        self.idle_since.store(ms, Ordering::Relaxed);
    }
}

/// A response body carrying a [`MarkSent`].
struct SentBody {
    inner: Body,
    #[allow(dead_code)] // Held for its `Drop`.
    mark: MarkSent,
}

impl HttpBody for SentBody {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A connection whose writes fail once one has made no progress for `limit`: a client that
/// stops reading is cut off instead of holding its response (and the buffers behind it).
struct StallGuard<T> {
    inner: T,
    limit: Duration,
    /// Armed when a write first finds the connection full; disarmed by any progress. Idle
    /// connections (nothing to write) hold no timer.
    stalled: Option<Pin<Box<Sleep>>>,
}

impl<T: AsyncWrite + Unpin> StallGuard<T> {
    /// Turns a pending write into an error once the stall has lasted `limit`.
    fn on_write<R>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<R>>,
    ) -> Poll<io::Result<R>> {
        match polled {
            Poll::Pending => {
                let limit = self.limit;
                let sleep = self
                    .stalled
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
                match sleep.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        self.stalled = None;
                        Poll::Ready(Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            "the client read nothing for the write deadline",
                        )))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
            ready => {
                self.stalled = None;
                ready
            }
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for StallGuard<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for StallGuard<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write(cx, data);
        this.on_write(cx, polled)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_flush(cx);
        this.on_write(cx, polled)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.on_write(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
