//! The ws transport module is responsible for handling websocket connections
//! The only public function is [`new_req`] which is used to upgrade a http request to a websocket connection
//!
//! Other functions are used internally to handle the websocket connection through tasks and channels
//! and to handle upgrade from polling to ws

use std::{sync::Arc, time::Duration};

use futures_util::{SinkExt, StreamExt};
use http::{HeaderValue, Request, Response, StatusCode, request::Parts};
use smallvec::smallvec;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::{
    WebSocketStream,
    tungstenite::{
        self, Message,
        handshake::derive_accept_key,
        protocol::{Role, WebSocketConfig},
    },
};
use tokio_util::future::FutureExt as _;

use engineioxide_core::{Packet, ProtocolVersion, Sid, Str, TransportType};
use tokio::time::Instant;

use crate::{
    DisconnectReason, Socket, body::ResponseBody, config::EngineIoConfig, engine::EngineIo,
    errors::Error, handler::EngineIoHandler, queue::Entry, transport::make_open_packet,
};

/// Create a response for websocket upgrade
fn ws_response<B>(ws_key: &HeaderValue) -> Response<ResponseBody<B>> {
    let derived = derive_accept_key(ws_key.as_bytes());
    let sec = derived.parse::<HeaderValue>().unwrap();
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(http::header::UPGRADE, HeaderValue::from_static("websocket"))
        .header(
            http::header::CONNECTION,
            HeaderValue::from_static("Upgrade"),
        )
        .header(http::header::SEC_WEBSOCKET_ACCEPT, sec)
        .body(ResponseBody::empty_response())
        .unwrap() // we are only using constants
}

/// Upgrade a websocket request to create a websocket connection.
///
/// If a sid is provided in the query it means that is is upgraded from an existing HTTP polling request.
/// In this case the http polling request is closed and the SID is kept for the websocket
pub fn new_req<R: Send + 'static, B, H: EngineIoHandler>(
    engine: Arc<EngineIo<H>>,
    protocol: ProtocolVersion,
    sid: Option<Sid>,
    req: Request<R>,
) -> Result<Response<ResponseBody<B>>, Error> {
    let (mut parts, body) = req.into_parts();
    let req = Request::from_parts(parts.clone(), body);

    let ws_key = parts
        .headers
        .remove("Sec-WebSocket-Key")
        .ok_or(Error::InvalidWebSocketKey)?;
    // Switchboard patch: the parts kept for the socket's life do not keep what only the
    // upgrade needs: the accept key (and a header map allocated for it alone) and hyper's
    // upgrade handle (a clone, with the extension map allocated for it).
    if parts.headers.is_empty() {
        parts.headers = http::HeaderMap::new();
    }
    parts.extensions.remove::<hyper::upgrade::OnUpgrade>();
    if parts.extensions.is_empty() {
        parts.extensions = http::Extensions::new();
    }

    // Everything the task captures stays in it for the connection's life: the request is turned
    // into its upgrade future here, and the parts kept for the socket are boxed until then.
    let on_upgrade = hyper::upgrade::on(req);
    let parts = Box::new(parts);
    tokio::spawn(async move {
        let conn = match on_upgrade.await {
            Ok(conn) => hyper_util::rt::TokioIo::new(conn),
            Err(_e) => {
                #[cfg(feature = "tracing")]
                tracing::debug!("ws upgrade error: {}", _e);
                return;
            }
        };

        match on_init(engine.clone(), conn, protocol, sid, parts).await {
            Ok(()) => {
                #[cfg(feature = "tracing")]
                tracing::debug!(?sid, "ws closed")
            }
            Err(Error::MultipleWebsocketRequests) => {}
            Err(_e) => {
                #[cfg(feature = "tracing")]
                tracing::debug!(?sid, "ws closed with error: {_e}");
                if let Some(sid) = sid {
                    engine.close_session(sid, DisconnectReason::TransportError);
                }
            }
        }
    });

    Ok(ws_response(&ws_key))
}

/// Serve a websocket connection until it closes: set the session up, then [`serve`] it.
///
/// Switchboard patch: a plain function returning an `async move` block, not an `async fn`. An
/// `async fn`'s future keeps each argument twice (the captured argument and the local it is
/// moved into, rust-lang/rust#62958), for the connection's whole life; the block uses what it
/// captured in place.
#[allow(clippy::manual_async_fn)] // an `async fn` would keep its arguments twice (above)
pub fn on_init<H: EngineIoHandler, S>(
    engine: Arc<EngineIo<H>>,
    conn: S,
    protocol: ProtocolVersion,
    sid: Option<Sid>,
    req_data: Box<Parts>,
) -> impl std::future::Future<Output = Result<(), Error>> + Send
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    async move {
        // Boxed: the handshake's state is not kept for the connection's life.
        let (socket, ws, heartbeat) =
            Box::pin(set_up(engine.clone(), conn, protocol, sid, req_data)).await?;
        serve(engine, socket, ws, heartbeat).await;
        Ok(())
    }
}

/// The websocket and heartbeat of a session, once [`set_up`].
type Session<H, S> = (
    Arc<Socket<<H as EngineIoHandler>::Data>>,
    WebSocketStream<S>,
    Option<Heartbeat>,
);

/// Handle a websocket connection upgrade
///
/// Sends an open packet if it is not an upgrade from a polling request
///
/// Switchboard patch: one task per connection. Upstream split the stream and spawned a writer
/// task and a heartbeat task beside a reader; each idle connection paid for three tasks and a
/// shared lock around the split stream. Here the connection's task sets the session up with this
/// function, then [`serve`] reads, writes and (for new v4 sessions) runs the heartbeat.
#[cfg_attr(
    feature = "tracing",
    tracing::instrument(level = "trace", name = "init_websocket", skip(engine, conn, req_data))
)]
async fn set_up<H: EngineIoHandler, S>(
    engine: Arc<EngineIo<H>>,
    conn: S,
    protocol: ProtocolVersion,
    sid: Option<Sid>,
    req_data: Box<Parts>,
) -> Result<Session<H, S>, Error>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let ws_config = WebSocketConfig::default()
        .read_buffer_size(engine.config.ws_read_buffer_size)
        .max_message_size(Some(engine.config.ws_max_message_size))
        .max_frame_size(Some(engine.config.ws_max_frame_size));

    let ws_init = move || WebSocketStream::from_raw_socket(conn, Role::Server, Some(ws_config));
    let (socket, ws, heartbeat) = if let Some(sid) = sid {
        match engine.get_socket(sid) {
            None => return Err(Error::UnknownSessionID(sid)),
            Some(socket) if socket.is_ws() => return Err(Error::MultipleWebsocketRequests),
            Some(socket) => {
                let mut ws = ws_init().await;

                let upgrade_fut = upgrade_handshake::<H, S>(&socket, &mut ws);
                match tokio::time::timeout(engine.config.upgrade_timeout, upgrade_fut)
                    .with_cancellation_token(&socket.cancellation_token)
                    .await
                {
                    Some(Ok(res)) => res?,
                    Some(Err(_)) => {
                        #[cfg(feature = "tracing")]
                        tracing::debug!(?sid, "ws upgrade timed out, closing session");
                        engine.close_session(socket.id, DisconnectReason::TransportError);
                        return Err(Error::Upgrade);
                    }
                    None => {
                        #[cfg(feature = "tracing")]
                        tracing::debug!(?sid, "socket is being closed");
                        return Err(Error::Upgrade);
                    }
                }
                // The polling session's heartbeat task keeps running.
                (socket, ws, None)
            }
        }
    } else {
        let socket = engine.create_session(protocol, TransportType::Websocket, *req_data, false);

        #[cfg(feature = "tracing")]
        tracing::debug!("new websocket connection");

        let mut ws = ws_init().await;
        init_handshake(socket.id, &mut ws, &engine.config).await?;
        let heartbeat = if socket.protocol == ProtocolVersion::V4 {
            Some(Heartbeat::new(
                engine.config.ping_interval,
                engine.config.ping_timeout,
            ))
        } else {
            socket
                .clone()
                .spawn_heartbeat(engine.config.ping_interval, engine.config.ping_timeout);
            None
        };
        (socket, ws, heartbeat)
    };

    Ok((socket, ws, heartbeat))
}

/// How a connection's loop ended.
enum Outcome {
    /// The client closed the transport.
    Closed,
    /// The session was closed on the server side.
    Cancelled,
    /// A transport, protocol or heartbeat error.
    Failed(Error),
}

/// Most queued batches written before the stream is flushed and read from again.
const MAX_BATCHES_PER_FLUSH: usize = 64;

/// Once a connection is busy (its last flush wrote more than one batch: packets queued faster
/// than it wrote them), packets that arrive within this long of its last flush wait until this
/// long after it and go out together: one `write` call (and one wake-up of the client) for
/// several packets, instead of one per packet. It stays so while packets keep coming (a held
/// flush that writes a single batch ends it). A socket that keeps up, packet by packet (nearly
/// every one), is written to at once, as before. Added latency: at most this long, and only for
/// a socket that is falling behind its packets anyway. 20 ms rather than 10: on loopback the
/// kernel's TCP work per `write` was half of the fan-out's CPU, and the longer window cut it by a
/// quarter to a third per delivery at 140-280 packets a second per socket, with p99 lower, not
/// higher, at those rates (less queueing on a saturated core); see `PATCHES.md`.
const WRITE_COALESCE: Duration = Duration::from_millis(20);

/// The v4 heartbeat of a websocket session, driven by its connection task: a ping every
/// `interval`, and the session ends if its pong takes longer than `timeout`.
struct Heartbeat {
    interval: Duration,
    timeout: Duration,
    last_ping: Instant,
    awaiting_pong: bool,
}

impl Heartbeat {
    fn new(interval: Duration, timeout: Duration) -> Self {
        Self {
            interval,
            timeout,
            // As socket.io does: the first ping one interval after the handshake.
            last_ping: Instant::now(),
            awaiting_pong: false,
        }
    }

    fn deadline(&self) -> Instant {
        if self.awaiting_pong {
            self.last_ping + self.timeout
        } else {
            self.last_ping + self.interval
        }
    }

    /// The deadline passed: queue a ping, or fail if a pong is overdue.
    fn on_deadline<D: Default + Send + Sync + 'static>(
        &mut self,
        socket: &Socket<D>,
    ) -> Result<(), Error> {
        if self.awaiting_pong {
            return Err(Error::HeartbeatTimeout);
        }
        #[cfg(feature = "tracing")]
        tracing::trace!(sid = ?socket.id, "emitting ping");
        socket
            .queue
            .try_send(smallvec![Packet::Ping])
            .map_err(|_| Error::HeartbeatTimeout)?;
        self.last_ping += self.interval;
        self.awaiting_pong = true;
        Ok(())
    }
}

/// Read, write and run the heartbeat until the connection or the session ends, then close the
/// session and the websocket.
///
/// Its future is what an idle connection keeps, so the short-lived steps (taking the queue's
/// lock, the closing handshake) are boxed while they run, and it is an `async move` block over
/// the arguments rather than an `async fn`, which would keep each of them (the websocket is
/// 328 bytes) twice (see [`on_init`]).
#[allow(clippy::manual_async_fn)] // an `async fn` would keep its arguments twice (above)
fn serve<H: EngineIoHandler, S>(
    engine: Arc<EngineIo<H>>,
    socket: Arc<Socket<H::Data>>,
    mut ws: WebSocketStream<S>,
    mut heartbeat: Option<Heartbeat>,
) -> impl std::future::Future<Output = ()> + Send
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    async move {
        let outcome = 'session: {
            // A polling request that was in progress during the upgrade may still hold the lock.
            let lock = socket
                .internal_rx
                .lock()
                .with_cancellation_token(&socket.cancellation_token);
            let Some(_rx) = Box::pin(lock).await else {
                #[cfg(feature = "tracing")]
                tracing::debug!(sid = %socket.id, "session closed before starting the ws writer");
                break 'session Outcome::Cancelled;
            };
            // Without a heartbeat here, the timer never fires (its branch is disabled).
            let sleep = tokio::time::sleep_until(heartbeat.as_ref().map_or_else(
                || Instant::now() + Duration::from_secs(86_400),
                Heartbeat::deadline,
            ));
            tokio::pin!(sleep);
            // One registration for the session's life rather than one per wake-up.
            let cancelled = socket.cancellation_token.cancelled();
            tokio::pin!(cancelled);
            let read_gate = ReadGate::new();
            // When the last packets were flushed; while `holding`, what waits is written when
            // `coalesce` fires (see `WRITE_COALESCE`). The timer is allocated on first use only.
            let mut last_flush: Option<Instant> = None;
            // Did the last flush write more than one batch (the socket is busy)?
            let mut busy = false;
            let mut coalesce: Option<std::pin::Pin<Box<tokio::time::Sleep>>> = None;
            let mut holding = false;

            // Writes what the queue holds, then flushes.
            macro_rules! write_queued {
                () => {{
                    // The queue is only closed once this task released its lock.
                    let Some(entry) = socket.queue.try_recv() else {
                        if socket.queue.is_closed() {
                            break 'session Outcome::Cancelled;
                        }
                        continue;
                    };
                    let pong_overdue = heartbeat.as_ref().is_some_and(|h| h.awaiting_pong);
                    tokio::select! {
                        biased;
                        res = write_entries(&socket, &mut ws, entry) => match res {
                            Ok(batches) => busy = batches > 1,
                            Err(e) => break 'session Outcome::Failed(e.into()),
                        },
                        // A client that stops reading must not keep this task writing forever.
                        _ = &mut cancelled => break 'session Outcome::Cancelled,
                        _ = &mut sleep, if pong_overdue => {
                            break 'session Outcome::Failed(Error::HeartbeatTimeout)
                        }
                    }
                    last_flush = Some(Instant::now());
                }};
            }

            loop {
                tokio::select! {
                    biased;
                    () = std::future::poll_fn(|cx| socket.queue.poll_ready(cx)), if !holding => {
                        let hold_until = last_flush
                            .filter(|_| busy)
                            .map(|t| t + WRITE_COALESCE)
                            .filter(|until| *until > Instant::now());
                        if let Some(until) = hold_until {
                            match coalesce.as_mut() {
                                Some(timer) => timer.as_mut().reset(until),
                                None => coalesce = Some(Box::pin(tokio::time::sleep_until(until))),
                            }
                            holding = true;
                            continue;
                        }
                        write_queued!();
                    }
                    // The window is over, or a backlog must not fill the queue (packets beyond it
                    // are refused) while held.
                    () = std::future::poll_fn(|cx| {
                        let window_over = coalesce.as_mut().is_some_and(|t| t.as_mut().poll(cx).is_ready());
                        if window_over || socket.queue.poll_backlog(cx).is_ready() {
                            std::task::Poll::Ready(())
                        } else {
                            std::task::Poll::Pending
                        }
                    }), if holding => {
                        holding = false;
                        write_queued!();
                    }
                    msg = std::future::poll_fn(|cx| read_gate.poll_next(&mut ws, cx)) => {
                        let msg = match msg {
                            None => break 'session Outcome::Closed,
                            Some(Err(e)) => break 'session Outcome::Failed(e.into()),
                            Some(Ok(msg)) => msg,
                        };
                        match on_message(&engine, &socket, msg) {
                            Ok(Flow::Continue) => {}
                            Ok(Flow::Heartbeat) => match heartbeat.as_mut() {
                                Some(h) if h.awaiting_pong => {
                                    h.awaiting_pong = false;
                                    sleep.as_mut().reset(h.deadline());
                                }
                                Some(_) => {}
                                None => socket.heartbeat_received(),
                            },
                            Ok(Flow::Closed) => break 'session Outcome::Closed,
                            Err(e) => break 'session Outcome::Failed(e),
                        }
                    }
                    _ = &mut cancelled => {
                        // What was held back still goes out before the close frame, as anything
                        // else queued does: written at once by the queue's branch, which comes first.
                        if holding {
                            (holding, busy) = (false, false);
                            continue;
                        }
                        break 'session Outcome::Cancelled
                    }
                    _ = &mut sleep, if heartbeat.is_some() => {
                        let Some(h) = heartbeat.as_mut() else { continue };
                        if let Err(e) = h.on_deadline(&socket) {
                            break 'session Outcome::Failed(e);
                        }
                        sleep.as_mut().reset(h.deadline());
                    }
                }
            }
        };
        match outcome {
            Outcome::Failed(e) => {
                let reason = Option::<DisconnectReason>::from(&e)
                    .unwrap_or(DisconnectReason::TransportError);

                #[cfg(feature = "tracing")]
                tracing::debug!("error when handling packet: {:?}", e);
                engine.close_session(socket.id, reason);
                return;
            }
            Outcome::Closed => {
                #[cfg(feature = "tracing")]
                tracing::debug!(sid = %socket.id, "ws transport was closed");
                engine.close_session(socket.id, DisconnectReason::TransportClose);
            }
            Outcome::Cancelled => {
                #[cfg(feature = "tracing")]
                tracing::debug!(sid = %socket.id, "socket is closing");
            }
        }
        // Send the close frame (or the reply to the client's), bounded: the client may not read.
        Box::pin(tokio::time::timeout(
            engine.config.ping_timeout,
            ws.close(None),
        ))
        .await
        .ok();
    }
}

/// Polls the websocket for its next message only once something woke its read side.
///
/// Every wake-up of the connection task (a queued packet, a timer) polled the stream again, and a
/// read attempt that finds nothing still costs tungstenite a buffer reservation and a read call:
/// about 600 instructions per delivery of a broadcast. The stream is polled with a waker of its
/// own that records its wake-ups; until one comes, the poll is skipped.
struct ReadGate {
    state: Arc<ReadWake>,
    waker: std::task::Waker,
}

struct ReadWake {
    woken: std::sync::atomic::AtomicBool,
    task: futures_util::task::AtomicWaker,
}

impl std::task::Wake for ReadWake {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref()
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, std::sync::atomic::Ordering::Release);
        self.task.wake();
    }
}

impl ReadGate {
    fn new() -> Self {
        let state = Arc::new(ReadWake {
            // Poll once to register the stream's interest.
            woken: std::sync::atomic::AtomicBool::new(true),
            task: futures_util::task::AtomicWaker::new(),
        });
        let waker = std::task::Waker::from(state.clone());
        Self { state, waker }
    }

    fn poll_next<S>(
        &self,
        ws: &mut WebSocketStream<S>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Message, tungstenite::Error>>>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        use std::sync::atomic::Ordering;
        self.state.task.register(cx.waker());
        if !self.state.woken.swap(false, Ordering::AcqRel) {
            return std::task::Poll::Pending;
        }
        let mut own = std::task::Context::from_waker(&self.waker);
        let polled = ws.poll_next_unpin(&mut own);
        if polled.is_ready() {
            // More frames may already be buffered: no wake-up would announce them.
            self.state.woken.store(true, Ordering::Release);
        }
        polled
    }
}

/// What the connection loop does after a message from the client.
enum Flow {
    Continue,
    /// A Pong (v4) or Ping (v3) arrived.
    Heartbeat,
    /// The client closed the session.
    Closed,
}

/// Handle one websocket message from the client.
fn on_message<H: EngineIoHandler>(
    engine: &Arc<EngineIo<H>>,
    socket: &Arc<Socket<H::Data>>,
    msg: Message,
) -> Result<Flow, Error> {
    match msg {
        Message::Text(msg) => match Packet::parse(socket.protocol, ws_bytes_to_str(msg))? {
            Packet::Close => {
                #[cfg(feature = "tracing")]
                tracing::debug!("[sid={}] closing session", socket.id);
                engine.close_session(socket.id, DisconnectReason::TransportClose);
                Ok(Flow::Closed)
            }
            Packet::Pong | Packet::Ping => Ok(Flow::Heartbeat),
            Packet::Message(msg) => {
                engine.handler.on_message(msg, socket.clone());
                Ok(Flow::Continue)
            }
            p => Err(Error::BadPacket(p)),
        },
        Message::Binary(mut data) => {
            if socket.protocol == ProtocolVersion::V3 && !data.is_empty() {
                // The first byte is the message type, which we don't need.
                data = data.split_off(1);
            }
            engine.handler.on_binary(data, socket.clone());
            Ok(Flow::Continue)
        }
        Message::Close(_) => {
            #[cfg(feature = "tracing")]
            tracing::debug!("websocket closed, closing session");
            engine.close_session(socket.id, DisconnectReason::TransportClose);
            Ok(Flow::Closed)
        }
        _ => {
            #[cfg(feature = "tracing")]
            tracing::debug!(sid = ?socket.id, "unexpected ws message");
            Ok(Flow::Continue)
        }
    }
}

/// Write `first` and whatever else is queued (up to [`MAX_BATCHES_PER_FLUSH`]), then flush;
/// returns how many batches it wrote.
/// It keeps no packet buffer across its awaits (each frame is built before it is fed), so it
/// stays small enough to run inline in the connection's future.
///
/// An `async move` block, not an `async fn` (whose future would keep its arguments twice): this
/// future is part of the connection task's, whose size every idle connection pays.
#[allow(clippy::manual_async_fn)] // an `async fn` would keep its arguments twice (above)
fn write_entries<'a, D, S>(
    socket: &'a Socket<D>,
    ws: &'a mut WebSocketStream<S>,
    first: Entry,
) -> impl std::future::Future<Output = Result<usize, tungstenite::Error>> + 'a
where
    D: Default + Send + Sync + 'static,
    S: AsyncRead + AsyncWrite + Unpin,
{
    async move {
        let mut entry = Some(first);
        let mut written = 0;
        while let Some(next) = entry {
            match next {
                Entry::Message(msg) => ws.feed(Message::Text(message_frame(msg))).await?,
                Entry::Packets(mut packets) => {
                    for i in 0..packets.len() {
                        let packet = std::mem::replace(&mut packets[i], Packet::Noop);
                        if let Some(msg) = ws_message(socket.protocol, packet) {
                            ws.feed(msg).await?;
                        }
                    }
                }
            }
            written += 1;
            entry = if written < MAX_BATCHES_PER_FLUSH {
                socket.queue.try_recv()
            } else {
                None
            };
        }
        #[cfg(feature = "tracing")]
        tracing::trace!(sid = %socket.id, "ws flush");
        ws.flush().await?;
        Ok(written)
    }
}

/// The text frame of a message packet: `4` and the message.
///
/// A broadcast hands each of its sockets a clone of one `Str`, and their connection tasks write
/// it one after another. The frame is built once per worker thread and shared (a `Bytes` clone)
/// by the next sockets writing the same message, instead of one allocation and copy per socket.
/// The cached `Str` is held, so its memory cannot be reused for another message while cached:
/// the same address and length mean the same bytes.
fn message_frame(msg: Str) -> tungstenite::Utf8Bytes {
    thread_local! {
        static LAST: std::cell::RefCell<Option<(Str, tungstenite::Utf8Bytes)>> =
            const { std::cell::RefCell::new(None) };
    }
    LAST.with(|last| {
        let mut last = last.borrow_mut();
        if let Some((cached, frame)) = last.as_ref()
            && cached.as_bytes().as_ptr() == msg.as_bytes().as_ptr()
            && cached.len() == msg.len()
        {
            return frame.clone();
        }
        let mut text = String::with_capacity(msg.len() + 1);
        text.push('4');
        text.push_str(&msg);
        let frame = tungstenite::Utf8Bytes::from(text);
        *last = Some((msg, frame.clone()));
        frame
    })
}

/// The websocket frame of a packet; `None` for a NOOP left over from a polling upgrade.
fn ws_message(protocol: ProtocolVersion, packet: Packet) -> Option<Message> {
    match packet {
        Packet::Binary(bin) | Packet::BinaryV3(bin) if protocol == ProtocolVersion::V3 => {
            // v3 protocol requires packet type as the first byte.
            // This requires a new buffer. This is OK as it is only for the V3 protocol.
            let mut buff = Vec::with_capacity(bin.len() + 1);
            buff.push(0x04);
            buff.extend(bin);
            Some(Message::Binary(buff.into()))
        }
        Packet::Binary(bin) | Packet::BinaryV3(bin) => Some(Message::Binary(bin)),
        Packet::Noop => None,
        Packet::Message(msg) => Some(Message::Text(message_frame(msg))),
        packet => {
            let packet = String::from(packet);
            Some(Message::Text(packet.into()))
        }
    }
}

/// Send a Engine.IO [`OpenPacket`] to initiate a websocket connection
async fn init_handshake<S>(
    sid: Sid,
    ws: &mut WebSocketStream<S>,
    config: &EngineIoConfig,
) -> Result<(), Error>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let packet = Packet::Open(make_open_packet(TransportType::Websocket, sid, config));
    let packet: String = packet.into();
    ws.send(Message::Text(packet.into())).await?;
    Ok(())
}

/// Upgrade a session from a polling request to a websocket request.
///
/// Before upgrading the session the server should send a NOOP packet to any pending polling request.
///
/// ## Handshake :
/// ```text
/// CLIENT                                                 SERVER
///│                                                      │
///│   GET /engine.io/?EIO=4&transport=websocket&sid=...  │
///│ ───────────────────────────────────────────────────► │
///│  ◄─────────────────────────────────────────────────┘ │
///│            HTTP 101 (WebSocket handshake)            │
///│                                                      │
///│            -----  WebSocket frames -----             │
///│  ─────────────────────────────────────────────────►  │
///│                         2probe                       │ (ping packet)
///│  ◄─────────────────────────────────────────────────  │
///│                         3probe                       │ (pong packet)
///│  ─────────────────────────────────────────────────►  │
///│                         5                            │ (upgrade packet)
///│                                                      │
///│            -----  WebSocket frames -----             │
/// ```
#[cfg_attr(
    feature = "tracing",
    tracing::instrument(level = "trace", skip(socket, ws))
)]
async fn upgrade_handshake<H: EngineIoHandler, S>(
    socket: &Arc<Socket<H::Data>>,
    ws: &mut WebSocketStream<S>,
) -> Result<(), Error>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    #[cfg(feature = "tracing")]
    tracing::debug!("starting websocket connection upgrade");

    // The socket is upgrading, from now on all polling
    // request will return a `Packet::Noop`
    socket.start_upgrade();

    // We send a last Noop request to close a potential waiting polling request.
    socket
        .queue
        .force_send(smallvec![Packet::Noop])
        .map_err(|_| Error::Upgrade)?;

    // wait for any current polling connection to finish by waiting for the socket to be unlocked
    // All other polling connection will be immediately closed with a NOOP packet.
    let _lock = socket.internal_rx.lock().await;

    // Fetch the next packet from the ws stream, it should be a PingUpgrade packet
    let msg = match ws.next().await {
        Some(Ok(Message::Text(d))) => d,
        _ => Err(Error::Upgrade)?,
    };
    match Packet::parse(socket.protocol, ws_bytes_to_str(msg))? {
        Packet::PingUpgrade => {
            #[cfg(feature = "tracing")]
            tracing::debug!("received first ping upgrade");
            // Respond with a PongUpgrade packet
            ws.send(Message::Text(String::from(Packet::PongUpgrade).into()))
                .await?;
        }
        p => Err(Error::BadPacket(p))?,
    };

    // Fetch the next packet from the ws stream, it should be an Upgrade packet
    let msg = match ws.next().await {
        Some(Ok(Message::Text(d))) => d,
        Some(Ok(Message::Close(_))) => {
            #[cfg(feature = "tracing")]
            tracing::debug!("ws stream closed before upgrade");
            Err(Error::Upgrade)?
        }
        _ => {
            #[cfg(feature = "tracing")]
            tracing::debug!("unexpected ws message before upgrade");
            Err(Error::Upgrade)?
        }
    };
    match Packet::parse(socket.protocol, ws_bytes_to_str(msg))? {
        Packet::Upgrade => {
            #[cfg(feature = "tracing")]
            tracing::debug!("ws upgraded successfully")
        }
        p => Err(Error::BadPacket(p))?,
    };

    socket.upgrade_to_websocket();
    Ok(())
}

fn ws_bytes_to_str(bytes: tungstenite::Utf8Bytes) -> Str {
    // SAFETY: the bytes are guaranteed to be valid UTF-8 by the tungstenite parser
    unsafe { Str::from_bytes_unchecked(bytes.into()) }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use bytes::Bytes;
    use tokio::io::DuplexStream;

    use super::*;

    /// Records what the engine tells its handler.
    #[derive(Debug, Default)]
    struct Recorder {
        messages: Mutex<Vec<String>>,
        disconnects: Mutex<Vec<DisconnectReason>>,
        socket: Mutex<Option<Arc<Socket<()>>>>,
    }
    impl EngineIoHandler for Recorder {
        type Data = ();
        fn on_connect(self: Arc<Self>, socket: Arc<Socket<()>>) {
            *self.socket.lock().unwrap() = Some(socket);
        }
        fn on_disconnect(&self, _: Arc<Socket<()>>, reason: DisconnectReason) {
            self.disconnects.lock().unwrap().push(reason);
        }
        fn on_message(self: &Arc<Self>, msg: Str, socket: Arc<Socket<()>>) {
            self.messages.lock().unwrap().push(msg.to_string());
            socket.emit(format!("echo {msg}")).unwrap();
        }
        fn on_binary(self: &Arc<Self>, _: Bytes, _: Arc<Socket<()>>) {}
    }

    const INTERVAL: Duration = Duration::from_secs(25);
    const TIMEOUT: Duration = Duration::from_secs(20);

    /// A server task on one end of an in-memory pipe and a client on the other, past the
    /// Engine.IO handshake.
    async fn connect() -> (
        Arc<EngineIo<Recorder>>,
        WebSocketStream<DuplexStream>,
        tokio::task::JoinHandle<Result<(), Error>>,
    ) {
        connect_with(
            EngineIoConfig::builder()
                .ping_interval(INTERVAL)
                .ping_timeout(TIMEOUT)
                .build(),
        )
        .await
    }

    /// [`connect`] with another config.
    async fn connect_with(
        config: EngineIoConfig,
    ) -> (
        Arc<EngineIo<Recorder>>,
        WebSocketStream<DuplexStream>,
        tokio::task::JoinHandle<Result<(), Error>>,
    ) {
        let engine = Arc::new(EngineIo::new(Arc::new(Recorder::default()), config));
        let (server, client) = tokio::io::duplex(64 * 1024);
        let task = tokio::spawn(on_init(
            engine.clone(),
            server,
            ProtocolVersion::V4,
            None,
            Box::new(http::Request::<()>::default().into_parts().0),
        ));
        let mut client = WebSocketStream::from_raw_socket(client, Role::Client, None).await;
        let open = next_text(&mut client).await;
        assert!(open.starts_with("0{"), "open packet first, got {open}");
        (engine, client, task)
    }

    async fn next_text(client: &mut WebSocketStream<DuplexStream>) -> String {
        match client.next().await {
            Some(Ok(Message::Text(text))) => text.to_string(),
            other => panic!("expected a text frame, got {other:?}"),
        }
    }

    async fn disconnects(engine: &EngineIo<Recorder>) -> Vec<DisconnectReason> {
        // The handler hears of a close from a task of its own.
        for _ in 0..100 {
            let seen = engine.handler.disconnects.lock().unwrap().clone();
            if !seen.is_empty() {
                return seen;
            }
            tokio::task::yield_now().await;
        }
        engine.handler.disconnects.lock().unwrap().clone()
    }

    #[tokio::test(start_paused = true)]
    async fn messages_in_and_queued_packets_out_on_one_task() {
        let (engine, mut client, _task) = connect().await;
        client.send(Message::text("4hello")).await.unwrap();
        assert_eq!(next_text(&mut client).await, "4echo hello");
        assert_eq!(*engine.handler.messages.lock().unwrap(), ["hello"]);
    }

    #[tokio::test(start_paused = true)]
    async fn frames_that_arrive_together_are_all_read() {
        let (engine, mut client, _task) = connect().await;
        // Fed without flushing: the server reads the three frames in one go.
        for text in ["4a", "4b", "4c"] {
            client.feed(Message::text(text)).await.unwrap();
        }
        client.flush().await.unwrap();
        for echo in ["4echo a", "4echo b", "4echo c"] {
            assert_eq!(next_text(&mut client).await, echo);
        }
        assert_eq!(*engine.handler.messages.lock().unwrap(), ["a", "b", "c"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_stops_reading_is_closed_once_its_queue_passes_the_byte_bound() {
        const BOUND: usize = 1 << 20;
        const PACKET: usize = 64 * 1024;
        let config = EngineIoConfig::builder()
            .ping_interval(INTERVAL)
            .ping_timeout(TIMEOUT)
            .max_buffer_size(1024)
            .max_buffer_bytes(BOUND)
            .build();
        // The client never reads: the pipe (64 KiB) fills and the server's write waits.
        let (engine, _client, _task) = connect_with(config).await;
        let socket = engine.handler.socket.lock().unwrap().clone().unwrap();
        let big: Str = "x".repeat(PACKET).into();
        let mut sent = 0;
        // Through permits, socketioxide's way, letting the connection task write between them.
        while let Ok(permit) = socket.reserve() {
            permit.emit(big.clone());
            sent += 1;
            tokio::task::yield_now().await;
            assert!(
                sent < 1024,
                "the packet bound, not the byte bound, stopped it"
            );
        }
        assert_eq!(
            disconnects(&engine).await,
            [DisconnectReason::TransportError]
        );
        // What the node took: the bound, the packet past it, and what the connection task had
        // already taken to write when the pipe filled (18 packets in all when written).
        let taken = sent * PACKET;
        assert!(
            taken <= BOUND + 4 * PACKET,
            "{sent} packets of 64 KiB taken"
        );
        assert!(socket.is_closed());
    }

    #[tokio::test(start_paused = true)]
    async fn pings_every_interval_while_pongs_come_back() {
        let (engine, mut client, _task) = connect().await;
        for _ in 0..3 {
            let start = Instant::now();
            assert_eq!(next_text(&mut client).await, "2");
            assert!(start.elapsed() >= INTERVAL - Duration::from_millis(1));
            client.send(Message::text("3")).await.unwrap();
        }
        assert!(engine.handler.disconnects.lock().unwrap().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_missing_pong_ends_the_session() {
        let (engine, mut client, task) = connect().await;
        assert_eq!(next_text(&mut client).await, "2");
        let start = Instant::now();
        // No pong: the server closes the websocket once the timeout passes.
        match client.next().await {
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {}
            Some(Ok(other)) => panic!("unexpected frame {other:?}"),
        }
        assert!(start.elapsed() >= TIMEOUT - Duration::from_millis(1));
        task.await.unwrap().unwrap();
        assert_eq!(
            disconnects(&engine).await,
            [DisconnectReason::HeartbeatTimeout]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_server_side_close_sends_what_was_queued_then_closes() {
        let (engine, mut client, task) = connect().await;
        let socket = engine.handler.socket.lock().unwrap().clone().unwrap();
        socket.emit("last words").unwrap();
        socket.close(DisconnectReason::ClosingServer);
        assert_eq!(next_text(&mut client).await, "4last words");
        assert_eq!(next_text(&mut client).await, "1");
        assert!(matches!(client.next().await, Some(Ok(Message::Close(_)))));
        task.await.unwrap().unwrap();
        assert_eq!(
            disconnects(&engine).await,
            [DisconnectReason::ClosingServer]
        );
        assert!(socket.is_closed());
    }

    #[tokio::test(start_paused = true)]
    async fn a_socket_that_keeps_up_is_written_to_at_once() {
        let (engine, mut client, _task) = connect().await;
        let socket = engine.handler.socket.lock().unwrap().clone().unwrap();
        let start = Instant::now();
        for m in ["a", "b", "c"] {
            socket.emit(m).unwrap();
            assert_eq!(next_text(&mut client).await, format!("4{m}"));
        }
        assert!(
            start.elapsed() < WRITE_COALESCE,
            "one batch per flush: nothing held"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_busy_socket_has_its_packets_held_back_and_written_together_in_order() {
        let (engine, mut client, _task) = connect().await;
        let socket = engine.handler.socket.lock().unwrap().clone().unwrap();
        let start = Instant::now();
        // Two packets queued before the connection wrote: one flush, two batches: busy.
        socket.emit("a").unwrap();
        socket.emit("b").unwrap();
        for m in ["4a", "4b"] {
            assert_eq!(next_text(&mut client).await, m);
        }
        assert!(start.elapsed() < WRITE_COALESCE, "not busy before: at once");
        for m in ["c", "d", "e"] {
            socket.emit(m).unwrap();
        }
        for m in ["4c", "4d", "4e"] {
            assert_eq!(next_text(&mut client).await, m);
        }
        assert!(
            start.elapsed() >= WRITE_COALESCE,
            "held until WRITE_COALESCE after the last flush"
        );
        // Long after the last flush: at once again.
        tokio::time::sleep(WRITE_COALESCE * 2).await;
        let later = Instant::now();
        socket.emit("f").unwrap();
        assert_eq!(next_text(&mut client).await, "4f");
        assert!(later.elapsed() < WRITE_COALESCE);
        assert!(engine.handler.disconnects.lock().unwrap().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_held_back_is_written_once_half_the_queue_waits() {
        let (engine, mut client, _task) = connect().await;
        let socket = engine.handler.socket.lock().unwrap().clone().unwrap();
        socket.emit("a").unwrap();
        socket.emit("b").unwrap();
        assert_eq!(next_text(&mut client).await, "4a");
        assert_eq!(next_text(&mut client).await, "4b");
        let start = Instant::now();
        // More than half the queue (128 by default), less than all of it, at once.
        for i in 0..100 {
            socket.emit(format!("m{i}")).unwrap();
        }
        // One flush's worth goes out at once rather than at the window's end (the queue
        // could fill up meanwhile); the rest follows, in order.
        for i in 0..MAX_BATCHES_PER_FLUSH {
            assert_eq!(next_text(&mut client).await, format!("4m{i}"));
        }
        assert!(
            start.elapsed() < WRITE_COALESCE,
            "held back while half the queue waits"
        );
        for i in MAX_BATCHES_PER_FLUSH..100 {
            assert_eq!(next_text(&mut client).await, format!("4m{i}"));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_server_side_close_sends_the_packets_held_back_first() {
        let (engine, mut client, task) = connect().await;
        let socket = engine.handler.socket.lock().unwrap().clone().unwrap();
        socket.emit("a").unwrap();
        socket.emit("b").unwrap();
        assert_eq!(next_text(&mut client).await, "4a");
        assert_eq!(next_text(&mut client).await, "4b");
        socket.emit("held").unwrap();
        // Let the connection task see it (and hold it back) before the close.
        tokio::task::yield_now().await;
        socket.close(DisconnectReason::ClosingServer);
        assert_eq!(next_text(&mut client).await, "4held");
        assert_eq!(next_text(&mut client).await, "1");
        assert!(matches!(client.next().await, Some(Ok(Message::Close(_)))));
        task.await.unwrap().unwrap();
    }

    #[test]
    fn a_shared_message_is_framed_once_and_a_new_one_anew() {
        let msg = Str::from(String::from("2[\"chat\",1]"));
        let a = message_frame(msg.clone());
        let b = message_frame(msg.clone());
        assert_eq!(a.as_str(), "42[\"chat\",1]");
        assert_eq!(
            a.as_str().as_ptr(),
            b.as_str().as_ptr(),
            "the second socket shares the frame"
        );
        // Same length, other bytes: framed anew.
        let other = message_frame(Str::from(String::from("2[\"chat\",2]")));
        assert_eq!(other.as_str(), "42[\"chat\",2]");
        assert_eq!(message_frame(msg).as_str(), "42[\"chat\",1]");
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_close_ends_the_session() {
        let (engine, mut client, task) = connect().await;
        client.close(None).await.unwrap();
        task.await.unwrap().unwrap();
        assert_eq!(
            disconnects(&engine).await,
            [DisconnectReason::TransportClose]
        );
    }
}
