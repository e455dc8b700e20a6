//! The one dispatcher through which every client event passes: its turn (arrival order), the
//! rate limit, payload parsing, the handler, metrics and the reply.
//!
//! Handlers are plain async functions over a [`Ctx`] and the event's [`Turn`] (its place in the
//! socket's order, passed on to the use case), not socketioxide `State<T>` extractors,
//! so no handler can be skipped silently by a state-type mismatch; payloads arrive as
//! `TryData<serde_json::Value>` and are parsed here, so a malformed one is answered with
//! `VALIDATION` instead of being dropped.
//!
//! The handlers live in one [`Routes`] table per node, indexed by
//! [`ClientEvent`]; each socket registers a single fallback handler that looks its events up
//! there. One boxed socketioxide handler per event and socket cost about 0.7 KB per connection
//! (measured in `loadtest/README.md`).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;
use serde::de::DeserializeOwned;
use socketioxide::ParserError;
use socketioxide::adapter::Adapter;
use socketioxide::extract::{AckSender, SocketRef};
use socketioxide::handler::{FromMessageParts, Value};
use socketioxide::socket::Socket;
use tracing::Instrument;

use super::ctx::Ctx;
use super::replies::{Empty, Success, send_reply};
use super::{desk, messages, presence, reports, typing};
use crate::client_events::{ClientEvent, RateClass, Reply};
use crate::error::{AppError, ErrorCode};
use crate::metrics::{OUTCOMES, outcome_index};
use crate::ordering::{EmitOrder, Turn};

/// Did the client ask for an acknowledgement?
pub(super) struct HasAck(pub bool);

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

/// One event's whole handling once its turn came: rate limit, payload parsing, the use case,
/// metrics and the reply.
type Route<A> = Box<
    dyn Fn(
            Ctx,
            Turn,
            SocketRef<A>,
            Result<serde_json::Value, ParserError>,
            AckSender<A>,
            bool,
        ) -> Pin<Box<dyn Future<Output = ()> + Send>>
        + Send
        + Sync,
>;

/// Every client event's handler, indexed by [`ClientEvent`]. Built once per node and shared by
/// its sockets.
pub struct Routes<A: Adapter> {
    /// `handlers[e as usize]` handles `e`.
    handlers: Vec<Route<A>>,
}

impl<A: Adapter> Routes<A> {
    /// Every event of the table, each with its handler.
    pub(super) fn new() -> Self {
        Routes {
            handlers: ClientEvent::ALL.iter().map(|&e| handler(e)).collect(),
        }
    }
}

/// The handler of each client event. Exhaustive: an event added to the table does not build
/// until it has its line here.
fn handler<A: Adapter>(event: ClientEvent) -> Route<A> {
    use ClientEvent::*;
    match event {
        MessageSend => route(event, messages::send),
        MessageRead => route(event, messages::read),
        MessageDelivered => route(event, messages::delivered),
        ChatSync => route(event, messages::sync),
        TypingStart => route(event, typing::start),
        TypingStop => route(event, typing::stop),
        SendReportMessage => route(event, reports::send),
        ReportRead => route(event, reports::read),
        UserOnline => route(event, presence::online),
        JoinUserRoom => route(event, presence::join_user_room),
        StaffAvailability => route(event, desk::availability),
    }
}

/// Routes `event` to `handler`: every call is rate limited, its payload parsed into `T`
/// (`VALIDATION` when that fails), timed and counted, and answered as the event's
/// [`Reply`] says.
fn route<A, T, R, F, Fut>(event: ClientEvent, handler: F) -> Route<A>
where
    A: Adapter,
    T: DeserializeOwned + Send + 'static,
    R: Serialize + Send + 'static,
    F: Fn(Ctx, Turn, T) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<R, AppError>> + Send + 'static,
{
    let name = event.name();
    let reply = event.reply();
    let droppable = event.rate_class() == RateClass::DroppedSilently;
    Box::new(move |ctx, turn, s, data, ack, has_ack| {
        let handler = handler.clone();
        Box::pin(async move {
            let started = Instant::now();
            let result = if !ctx.session.limiter.allow() {
                if droppable {
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
                    Ok(payload) => handler(ctx.clone(), turn, payload).await,
                    Err(e) => Err(AppError::validation(format!("invalid {name} payload: {e}"))),
                }
            };
            let m = ctx.state.metrics.event(Some(event));
            let elapsed = started.elapsed();
            let outcome = outcome_index(result.as_ref().err().map(|e| e.code));
            m.duration.observe(elapsed.as_secs_f64());
            m.outcomes[outcome].inc();
            tracing::debug!(
                outcome = OUTCOMES[outcome],
                elapsed_us = elapsed.as_micros() as u64,
                "event handled"
            );
            send_reply(&s, ack, has_ack, name, reply, result);
        })
    })
}

/// Handles one client event of a socket: takes its turn now (in arrival order, not inside the
/// spawned task), then, once the socket's previous event lets it, runs its route in its save
/// and emission turns. Counted in flight for a drain.
pub(super) fn dispatch<A: Adapter>(
    routes: &Arc<Routes<A>>,
    ctx: &Ctx,
    s: SocketRef<A>,
    event: String,
    data: Result<serde_json::Value, ParserError>,
    ack: AckSender<A>,
    has_ack: bool,
) -> impl Future<Output = ()> + Send + use<A> {
    let (ctx, routes) = (ctx.clone(), routes.clone());
    let (my_turn, done) = ctx.session.turns.take();
    let known = ClientEvent::from_name(event.as_str());
    let span = event_span(&ctx, &s, ClientEvent::label(known));
    async move {
        let _in_flight = ctx.state.drain.in_flight();
        my_turn.await;
        // `done`, dropped when this event is about to emit or is handled, lets the socket's
        // next event go.
        let session = ctx.session.clone();
        EmitOrder::run(&session.stages, done, |turn| async move {
            match known {
                Some(e) => routes.handlers[e as usize](ctx, turn, s, data, ack, has_ack).await,
                None => unknown_event(&ctx, &s, &event, ack, has_ack),
            }
        })
        .await;
    }
    .instrument(span)
}

/// An event no route knows: `VALIDATION` (or `RATE_LIMITED`), counted as `unknown`.
fn unknown_event<A: Adapter>(
    ctx: &Ctx,
    s: &SocketRef<A>,
    event: &str,
    ack: AckSender<A>,
    has_ack: bool,
) {
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
    ctx.state.metrics.event(None).outcomes[outcome_index(result.as_ref().err().map(|e| e.code))]
        .inc();
    send_reply(s, ack, has_ack, event, Reply::Standard, result);
}

/// The span every log line of an event's handling carries: which node, socket, user and event.
/// Never a token or a payload. Entered per event, it costs a few field writes when `info` is
/// enabled and nothing when it is filtered out.
fn event_span<A: Adapter>(ctx: &Ctx, s: &SocketRef<A>, event: &str) -> tracing::Span {
    tracing::info_span!("event", node = %ctx.state.node_id, socket_id = %s.id, user_id = %ctx.session.user.id, event)
}
