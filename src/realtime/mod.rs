//! The Socket.IO side: the handshake, the per-socket session, and one dispatcher through which
//! every client event passes (rate limit, payload parsing, metrics, ack or `error` reply).
//!
//! Handlers are closures over the [`AppState`], not socketioxide `State<T>` extractors, so no
//! handler can be skipped silently by a state-type mismatch; payloads arrive as
//! `TryData<serde_json::Value>` and are parsed here, so a malformed one is answered with
//! `VALIDATION` instead of being dropped.
//!
//! One file per event group: [`messages`], [`typing`], [`reports`], [`presence`].

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;
use serde::de::DeserializeOwned;
use socketioxide::adapter::Adapter;
use socketioxide::extract::{AckSender, Event, SocketRef, TryData};
use socketioxide::handler::{FromMessageParts, Value};
use socketioxide::socket::{DisconnectReason, Socket};
use socketioxide_core::adapter::DefinedAdapter;

use crate::app::AppState;
use crate::cluster::rooms;
use crate::domain::{AuthUser, Role, Timestamp};
use crate::error::{AppError, ErrorBody, ErrorCode};
use crate::metrics::outcome_index;
use crate::service::events;

pub mod limits;
pub mod messages;
pub mod presence;
pub mod reports;
pub mod typing;

/// What a socket carries from its handshake on.
pub struct Session {
    pub user: AuthUser,
    pub connected_at: Timestamp,
    pub limiter: limits::RateLimiter,
}

/// What every handler gets: the node's state and the socket's session.
#[derive(Clone)]
pub struct Ctx {
    pub state: AppState,
    pub session: Arc<Session>,
}

/// Did the client ask for an acknowledgement?
struct HasAck(bool);

impl<A: Adapter> FromMessageParts<A> for HasAck {
    type Error = Infallible;
    fn from_message_parts(
        _: &Arc<Socket<A>>,
        _: &mut Value,
        ack_id: &Option<i64>,
    ) -> Result<Self, Infallible> {
        Ok(HasAck(ack_id.is_some()))
    }
}

/// How an event answers.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// `{ ok: true, ... }` / `{ ok: false, error }` by ack, or the `error` event without one.
    Standard,
    /// Like `Standard`, but over its rate limit the event is dropped silently (typing).
    Droppable,
    /// `sendReportMessage`: `reportMessageSent` to the socket and the same body as ack; no
    /// `error` event.
    ReportSent,
}

#[derive(Serialize)]
struct Success<R> {
    ok: bool,
    #[serde(flatten)]
    body: R,
}

#[derive(Serialize)]
struct Failure<'a> {
    ok: bool,
    error: ErrorBody<'a>,
}

#[derive(Serialize)]
struct ErrorEvent<'a> {
    message: &'a str,
    error: &'static str,
    event: &'a str,
}

/// An empty success body.
#[derive(Serialize)]
pub struct Empty {}

/// Registers `handler` for `event`: every call is rate limited, its payload parsed into `T`
/// (`VALIDATION` when that fails), timed and counted, and answered as `reply` says.
pub fn on<A, T, R, F, Fut>(
    socket: &SocketRef<A>,
    ctx: &Ctx,
    event: &'static str,
    reply: Reply,
    handler: F,
) where
    A: Adapter,
    T: DeserializeOwned + Send + 'static,
    R: Serialize + Send + 'static,
    F: Fn(Ctx, T) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<R, AppError>> + Send + 'static,
{
    let ctx = ctx.clone();
    socket.on(
        event,
        move |s: SocketRef<A>,
              TryData(data): TryData<serde_json::Value>,
              ack: AckSender<A>,
              HasAck(has_ack): HasAck| {
            let (ctx, handler) = (ctx.clone(), handler.clone());
            async move {
                let _in_flight = ctx.state.in_flight();
                let started = Instant::now();
                let result = if !ctx.session.limiter.allow() {
                    if reply == Reply::Droppable {
                        let _ = ack.send(&Success {
                            ok: true,
                            body: Empty {},
                        });
                        return;
                    }
                    Err(AppError::new(
                        ErrorCode::RateLimited,
                        "too many events: slow down",
                    ))
                } else {
                    match data
                        .map_err(|e| e.to_string())
                        .and_then(|v| serde_json::from_value::<T>(v).map_err(|e| e.to_string()))
                    {
                        Ok(payload) => handler(ctx.clone(), payload).await,
                        Err(e) => Err(AppError::validation(format!(
                            "invalid {event} payload: {e}"
                        ))),
                    }
                };
                let m = ctx.state.metrics.event(event);
                m.duration.observe(started.elapsed().as_secs_f64());
                m.outcomes[outcome_index(result.as_ref().err().map(|e| e.code))].inc();
                send_reply(&s, ack, has_ack, event, reply, result);
            }
        },
    );
}

fn send_reply<A: Adapter, R: Serialize>(
    s: &SocketRef<A>,
    ack: AckSender<A>,
    has_ack: bool,
    event: &str,
    reply: Reply,
    result: Result<R, AppError>,
) {
    if let Err(e) = &result {
        tracing::debug!(event, code = e.code.as_str(), message = %e.message, "event refused");
    }
    let sent = match (reply, result) {
        (Reply::ReportSent, Ok(body)) => {
            let body = reports::SentBody::ok(body);
            let _ = s.emit(events::REPORT_SENT, &body);
            ack.send(&body)
        }
        (Reply::ReportSent, Err(e)) => {
            let body = reports::SentBody::failed(&e);
            let _ = s.emit(events::REPORT_SENT, &body);
            ack.send(&body)
        }
        (_, Ok(body)) => ack.send(&Success { ok: true, body }),
        (_, Err(e)) if has_ack => ack.send(&Failure {
            ok: false,
            error: e.body(),
        }),
        (_, Err(e)) => {
            let _ = s.emit(
                events::ERROR,
                &ErrorEvent {
                    message: &e.message,
                    error: e.code.as_str(),
                    event,
                },
            );
            Ok(())
        }
    };
    if let Err(e) = sent {
        tracing::debug!(event, error = %e, "reply not sent (socket gone?)");
    }
}

/// Why a handshake was refused; its text is the `connect_error` message.
#[derive(Debug)]
pub struct Refused(String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The handshake's `auth` object.
#[derive(serde::Deserialize)]
struct Handshake {
    token: String,
}

/// Registers the `/` namespace: authenticate in the handshake middleware (nothing runs for a
/// refused socket), then join the socket's rooms and wire its events.
pub fn register<A: Adapter + DefinedAdapter>(
    io: &socketioxide::SocketIo<A>,
    state: AppState,
) -> A::InitRes {
    use socketioxide::handler::ConnectHandler;
    let mw_state = state.clone();
    let authenticate = move |s: SocketRef<A>, TryData(auth): TryData<Handshake>| {
        let state = mw_state.clone();
        async move {
            let outcome = authenticate(&state, &s, auth);
            let label = match &outcome {
                Ok(()) => "accepted",
                Err(r) if r.0.starts_with("UNAVAILABLE") => "draining",
                Err(_) => "unauthorized",
            };
            state.metrics.connections.with_label_values(&[label]).inc();
            outcome
        }
    };
    let connected = move |s: SocketRef<A>| {
        let state = state.clone();
        async move { on_connect(state, s).await }
    };
    io.ns("/", connected.with(authenticate))
}

fn authenticate<A: Adapter>(
    state: &AppState,
    s: &SocketRef<A>,
    auth: Result<Handshake, socketioxide::ParserError>,
) -> Result<(), Refused> {
    if state.is_draining() {
        return Err(Refused(
            "UNAVAILABLE: this node is draining; reconnect".into(),
        ));
    }
    let token = auth
        .map_err(|_| Refused("UNAUTHORIZED: auth.token is missing".into()))?
        .token;
    let user = state
        .keys
        .verifier
        .verify(&token)
        .map_err(|e| Refused(e.message))?;
    let session = Session {
        user,
        connected_at: crate::domain::now(),
        limiter: limits::RateLimiter::new(state.config.rate_limit_per_sec),
    };
    s.extensions.insert(Arc::new(session));
    Ok(())
}

async fn on_connect<A: Adapter>(state: AppState, s: SocketRef<A>) {
    let Some(session) = s.extensions.get::<Arc<Session>>() else {
        tracing::error!("socket connected without a session; closing it");
        let _ = s.disconnect();
        return;
    };
    let user = &session.user;
    let mut joined = vec![rooms::user(&user.id)];
    joined.push(
        if user.role == Role::User {
            rooms::USERS
        } else {
            rooms::ADMINS
        }
        .to_owned(),
    );
    s.join(joined);
    state.metrics.sockets_connected.inc();
    tracing::debug!(socket_id = %s.id, user_id = %user.id, role = user.role.as_str(), "socket connected");

    let ctx = Ctx {
        state: state.clone(),
        session: session.clone(),
    };
    messages::register(&s, &ctx);
    typing::register(&s, &ctx);
    reports::register(&s, &ctx);
    presence::register(&s, &ctx);
    let fallback_ctx = ctx.clone();
    s.on_fallback(
        move |s: SocketRef<A>, Event(event): Event, ack: AckSender<A>, HasAck(has_ack): HasAck| {
            let ctx = fallback_ctx.clone();
            async move {
                let result: Result<Empty, AppError> = if ctx.session.limiter.allow() {
                    Err(AppError::validation(format!(
                        "unknown event '{}'",
                        event.chars().take(64).collect::<String>()
                    )))
                } else {
                    Err(AppError::new(
                        ErrorCode::RateLimited,
                        "too many events: slow down",
                    ))
                };
                ctx.state.metrics.event("unknown").outcomes
                    [outcome_index(result.as_ref().err().map(|e| e.code))]
                .inc();
                send_reply(&s, ack, has_ack, &event, Reply::Standard, result);
            }
        },
    );
    let disconnect_ctx = ctx.clone();
    s.on_disconnect(move |s: SocketRef<A>, reason: DisconnectReason| {
        let ctx = disconnect_ctx.clone();
        async move {
            ctx.state.metrics.sockets_connected.dec();
            tracing::debug!(socket_id = %s.id, user_id = %ctx.session.user.id, ?reason, "socket disconnected");
            ctx.state.socket_offline(&ctx.session.user.id, &s.id.to_string()).await;
        }
    });

    let socket_id = s.id.to_string();
    state
        .socket_online(&presence::entry(&state, &socket_id, &session))
        .await;
    // A socket that left while it was being registered must not stay counted.
    if !s.connected() {
        state.socket_offline(&session.user.id, &socket_id).await;
    }
}
