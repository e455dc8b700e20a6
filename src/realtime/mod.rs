//! The Socket.IO side: the handshake, the per-socket session, and one dispatcher through which
//! every client event passes (rate limit, payload parsing, metrics, ack or `error` reply).
//!
//! Handlers are closures over the [`AppState`], not socketioxide `State<T>` extractors, so no
//! handler can be skipped silently by a state-type mismatch; payloads arrive as
//! `TryData<serde_json::Value>` and are parsed here, so a malformed one is answered with
//! `VALIDATION` instead of being dropped.
//!
//! The handlers live in one [`Routes`] table per node; each socket registers a single fallback
//! handler that looks its events up there. One boxed socketioxide handler per event and socket
//! cost about 0.7 KB per connection (measured in `loadtest/README.md`).
//!
//! One file per event group: [`messages`], [`typing`], [`reports`], [`presence`].

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;
use serde::de::DeserializeOwned;
use socketioxide::ParserError;
use socketioxide::adapter::Adapter;
use socketioxide::extract::{AckSender, Event, SocketRef, TryData};
use socketioxide::handler::{FromMessageParts, Value};
use socketioxide::socket::{DisconnectReason, Sid, Socket};
use socketioxide_core::adapter::DefinedAdapter;
use tracing::Instrument;

use crate::app::AppState;
use crate::cluster::rooms;
use crate::domain::{AuthUser, Role, Timestamp};
use crate::error::{AppError, ErrorBody, ErrorCode};
use crate::metrics::{ConnectionOutcome, OUTCOMES, outcome_index};
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
    /// Keeps the socket's events in arrival order (see [`Turns`]).
    pub turns: Turns,
    /// Keeps the socket's events' saves and emissions in the same order (see [`EmitOrder`]).
    pub save_turns: Turns,
    pub emit_turns: Turns,
}

/// Hands out turns so that one socket's events are handled one at a time, in the order they
/// arrived. socketioxide runs every event handler as its own task; without turns, two
/// `message:send` from one socket could be saved, and reach other clients, in either order
/// (PROTOCOL.md: messages from one sender arrive in the order they were sent), and a
/// `user:typing:stop` could overtake its `start`.
#[derive(Default)]
pub struct Turns {
    /// Resolves (its sender is dropped) when the newest event so far has been handled.
    last: std::sync::Mutex<Option<tokio::sync::oneshot::Receiver<()>>>,
}

impl Turns {
    /// Takes the next turn. Call it synchronously when the event arrives; await the future
    /// before handling the event, and drop the sender once it is handled.
    fn take(
        &self,
    ) -> (
        impl Future<Output = ()> + Send + use<>,
        tokio::sync::oneshot::Sender<()>,
    ) {
        let (done, next) = tokio::sync::oneshot::channel();
        let previous = self
            .last
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .replace(next);
        let wait = async move {
            if let Some(previous) = previous {
                let _ = previous.await;
            }
        };
        (wait, done)
    }
}

tokio::task_local! {
    /// The emission order of the event being handled (socket events only).
    static EMIT_ORDER: EmitOrder;
}

/// Lets a socket's next event start once this one is about to save (its checks are done), while
/// its save still comes after the previous event's, and its emissions after the previous
/// event's and before the next one's.
///
/// One sender's events are handled one at a time ([`Turns`]); waiting for each event's save and
/// emission too capped a single sender at one chat read, one save and one publish per message
/// in turn (in cluster mode about 3.3 ms, so ~300 messages/s). With this, event N+1 is parsed
/// and authorized (its chat read) while event N is saved, and saved while event N's emission is
/// on its way. Order still holds: events take their save and emission turns in arrival order,
/// while they hold their event turn, and an event that saves or emits nothing passes its turn
/// on only after the previous event's.
pub struct EmitOrder {
    /// Dropped to let the socket's next event start.
    event_done: Slot<tokio::sync::oneshot::Sender<()>>,
    /// Resolves when the previous event's save is done; taken by the first wait.
    previous_saves: Slot<Pin<Box<dyn Future<Output = ()> + Send>>>,
    /// Dropped once this event's save is done (when it first emits, or is handled).
    saves_done: Slot<tokio::sync::oneshot::Sender<()>>,
    /// Resolves when the previous event's emissions are out; taken by the first wait.
    previous_emits: Slot<Pin<Box<dyn Future<Output = ()> + Send>>>,
}

type Slot<T> = std::sync::Mutex<Option<T>>;

fn take<T>(slot: &Slot<T>) -> Option<T> {
    slot.lock().unwrap_or_else(|p| p.into_inner()).take()
}

impl EmitOrder {
    /// Runs `handle` (one event's handling, reply included) in its save and emission turns.
    async fn run(
        save_turns: &Turns,
        emit_turns: &Turns,
        event_done: tokio::sync::oneshot::Sender<()>,
        handle: impl Future<Output = ()>,
    ) {
        // Taken while this event holds its event turn: these turns follow arrival order.
        let (previous_saves, saves_done) = save_turns.take();
        let (previous_emits, emits_done) = emit_turns.take();
        let order = EmitOrder {
            event_done: Slot::new(Some(event_done)),
            previous_saves: Slot::new(Some(Box::pin(previous_saves))),
            saves_done: Slot::new(Some(saves_done)),
            previous_emits: Slot::new(Some(Box::pin(previous_emits))),
        };
        EMIT_ORDER
            .scope(order, async {
                handle.await;
                // Nothing saved or emitted (or done): the next event may go, and these turns
                // are passed on once the previous event's save and emissions are done.
                wait_for_emit_turn().await;
            })
            .await;
        drop(emits_done);
    }
}

/// Called before a socket event's save that must follow the socket's previous events (a
/// message's `seq`): lets the socket's next event start and waits for the previous event's
/// save (once per event). Elsewhere (REST, timers) it returns at once.
pub async fn wait_for_save_turn() {
    let previous = EMIT_ORDER
        .try_with(|order| {
            drop(take(&order.event_done));
            take(&order.previous_saves)
        })
        .ok()
        .flatten();
    if let Some(previous) = previous {
        previous.await;
    }
}

/// Called before every room emission: inside a socket event, lets the socket's next event start
/// and save, and waits for the previous event's emissions (once per event); elsewhere (REST,
/// timers) it returns at once.
pub async fn wait_for_emit_turn() {
    // An event that saved nothing passes its save turn on only after the previous event's.
    wait_for_save_turn().await;
    let previous = EMIT_ORDER
        .try_with(|order| {
            drop(take(&order.saves_done));
            take(&order.previous_emits)
        })
        .ok()
        .flatten();
    if let Some(previous) = previous {
        previous.await;
    }
}

/// Sessions handed from the handshake middleware to the connect handler, by socket.
#[derive(Default)]
pub struct Handshakes(std::sync::Mutex<HashMap<Sid, Arc<Session>>>);

impl Handshakes {
    fn insert(&self, sid: Sid, session: Arc<Session>) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(sid, session);
    }

    fn take(&self, sid: Sid) -> Option<Arc<Session>> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&sid)
    }
}

/// What every handler gets: the node's state, the socket's id and its session.
#[derive(Clone)]
pub struct Ctx {
    pub state: AppState,
    pub socket_id: Sid,
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

/// One event's whole handling once its turn came: rate limit, payload parsing, the use case,
/// metrics and the reply.
type Route<A> = Box<
    dyn Fn(
            Ctx,
            SocketRef<A>,
            Result<serde_json::Value, ParserError>,
            AckSender<A>,
            bool,
        ) -> Pin<Box<dyn Future<Output = ()> + Send>>
        + Send
        + Sync,
>;

/// Every client event's handler, by event name. Built once per node and shared by its sockets.
pub struct Routes<A: Adapter> {
    map: HashMap<&'static str, Route<A>>,
}

impl<A: Adapter> Routes<A> {
    /// Every event the protocol defines (see each module's `routes`).
    fn new() -> Self {
        let mut routes = Routes {
            map: HashMap::new(),
        };
        messages::routes(&mut routes);
        typing::routes(&mut routes);
        reports::routes(&mut routes);
        presence::routes(&mut routes);
        routes
    }

    /// Routes `event` to `handler`: every call is rate limited, its payload parsed into `T`
    /// (`VALIDATION` when that fails), timed and counted, and answered as `reply` says.
    pub fn on<T, R, F, Fut>(&mut self, event: &'static str, reply: Reply, handler: F)
    where
        T: DeserializeOwned + Send + 'static,
        R: Serialize + Send + 'static,
        F: Fn(Ctx, T) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Result<R, AppError>> + Send + 'static,
    {
        let route: Route<A> = Box::new(move |ctx, s, data, ack, has_ack| {
            let handler = handler.clone();
            Box::pin(async move {
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
                let elapsed = started.elapsed();
                let outcome = outcome_index(result.as_ref().err().map(|e| e.code));
                m.duration.observe(elapsed.as_secs_f64());
                m.outcomes[outcome].inc();
                tracing::debug!(
                    outcome = OUTCOMES[outcome],
                    elapsed_us = elapsed.as_micros() as u64,
                    "event handled"
                );
                send_reply(&s, ack, has_ack, event, reply, result);
            })
        });
        self.map.insert(event, route);
    }
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
    ctx.state.metrics.event("unknown").outcomes
        [outcome_index(result.as_ref().err().map(|e| e.code))]
    .inc();
    send_reply(s, ack, has_ack, event, Reply::Standard, result);
}

/// The span every log line of an event's handling carries: which node, socket, user and event.
/// Never a token or a payload. Entered per event, it costs a few field writes when `info` is
/// enabled and nothing when it is filtered out.
fn event_span<A: Adapter>(ctx: &Ctx, s: &SocketRef<A>, event: &str) -> tracing::Span {
    tracing::info_span!("event", node = %ctx.state.node_id, socket_id = %s.id, user_id = %ctx.session.user.id, event)
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
        // A validation message can quote the client's payload (serde names the offending
        // value), and payloads stay out of the logs.
        let reason = if e.code == ErrorCode::Validation {
            ""
        } else {
            e.message.as_str()
        };
        tracing::debug!(event, code = e.code.as_str(), reason, "event refused");
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
    let routes = Arc::new(Routes::<A>::new());
    let authenticate = move |s: SocketRef<A>, TryData(auth): TryData<Handshake>| {
        let (state, routes) = (mw_state.clone(), routes.clone());
        async move {
            let outcome = authenticate(&state, &routes, &s, auth);
            state.metrics.connection(match &outcome {
                Ok(()) => ConnectionOutcome::Accepted,
                Err(r) if r.0.starts_with("UNAVAILABLE") => ConnectionOutcome::Draining,
                Err(_) => ConnectionOutcome::Unauthorized,
            });
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
    routes: &Arc<Routes<A>>,
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
        turns: Turns::default(),
        save_turns: Turns::default(),
        emit_turns: Turns::default(),
    };
    let session = Arc::new(session);
    state.handshakes.insert(s.id, session.clone());
    wire(state, routes, s, &session);
    Ok(())
}

/// Joins the socket's rooms and registers its event dispatcher. Called from the handshake
/// middleware, before the CONNECT packet leaves: socketioxide runs an async connect handler as
/// a task of its own, after CONNECT is sent, so a client that emits as soon as it is connected
/// (or a message sent to its room just then) could otherwise find no handler (the event would
/// be dropped silently) or no room. Nothing is emitted here.
fn wire<A: Adapter>(
    state: &AppState,
    routes: &Arc<Routes<A>>,
    s: &SocketRef<A>,
    session: &Arc<Session>,
) {
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
    tracing::debug!(node = %state.node_id, socket_id = %s.id, user_id = %user.id, role = user.role.as_str(), "socket connected");

    let ctx = Ctx {
        state: state.clone(),
        socket_id: s.id,
        session: session.clone(),
    };
    let disconnect_ctx = ctx.clone();
    s.on_disconnect(move |s: SocketRef<A>, reason: DisconnectReason| {
        let ctx = disconnect_ctx.clone();
        async move {
            // Its connect handler may not have run.
            ctx.state.handshakes.take(s.id);
            ctx.state.metrics.sockets_connected.dec();
            tracing::debug!(node = %ctx.state.node_id, socket_id = %s.id, user_id = %ctx.session.user.id, ?reason, "socket disconnected");
            ctx.state.socket_offline(&ctx.session.user.id, &s.id.to_string()).await;
        }
    });
    let routes = routes.clone();
    s.on_fallback(
        move |s: SocketRef<A>,
              Event(event): Event,
              TryData(data): TryData<serde_json::Value>,
              ack: AckSender<A>,
              HasAck(has_ack): HasAck| {
            let (ctx, routes) = (ctx.clone(), routes.clone());
            // Taken here, in arrival order, not inside the spawned task.
            let (my_turn, done) = ctx.session.turns.take();
            let name = routes
                .map
                .get_key_value(event.as_str())
                .map(|(name, _)| *name);
            let span = event_span(&ctx, &s, name.unwrap_or("unknown"));
            async move {
                let _in_flight = ctx.state.in_flight();
                my_turn.await;
                // `done`, dropped when this event is about to emit or is handled, lets the
                // socket's next event go.
                let session = ctx.session.clone();
                EmitOrder::run(&session.save_turns, &session.emit_turns, done, async move {
                    match name.and_then(|name| routes.map.get(name)) {
                        Some(route) => route(ctx, s, data, ack, has_ack).await,
                        None => unknown_event(&ctx, &s, &event, ack, has_ack),
                    }
                })
                .await;
            }
            .instrument(span)
        },
    );
}

/// Registers the socket in presence (which may announce the user online).
async fn on_connect<A: Adapter>(state: AppState, s: SocketRef<A>) {
    let Some(session) = state.handshakes.take(s.id) else {
        tracing::error!("socket connected without a session; closing it");
        let _ = s.disconnect();
        return;
    };
    let socket_id = s.id.to_string();
    state
        .socket_online(&presence::entry(&state, &socket_id, &session))
        .await;
    // A socket that left while it was being registered must not stay counted.
    if !s.connected() {
        state.socket_offline(&session.user.id, &socket_id).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn turns_are_served_in_the_order_they_were_taken() {
        let turns = Turns::default();
        let order = Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for i in 0..20usize {
            let (my_turn, done) = turns.take();
            let order = order.clone();
            tasks.push(tokio::spawn(async move {
                my_turn.await;
                // Later events do less work: without turns they would finish first.
                for _ in 0..(20 - i) {
                    tokio::task::yield_now().await;
                }
                order.lock().unwrap().push(i);
                drop(done);
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), (0..20).collect::<Vec<_>>());
    }

    /// One socket's turns, and events run in them as the dispatcher runs them.
    #[derive(Default)]
    struct TestSocket {
        turns: Turns,
        save_turns: Arc<Turns>,
        emit_turns: Arc<Turns>,
        log: Arc<std::sync::Mutex<Vec<String>>>,
    }

    type Handling = Pin<Box<dyn Future<Output = ()> + Send>>;

    impl TestSocket {
        /// Takes the next event turn now and runs `handle` in it.
        fn event(&self, handle: impl FnOnce(Log) -> Handling) -> tokio::task::JoinHandle<()> {
            let (my_turn, done) = self.turns.take();
            let (save_turns, emit_turns) = (self.save_turns.clone(), self.emit_turns.clone());
            let handle = handle(Log(self.log.clone()));
            tokio::spawn(async move {
                my_turn.await;
                EmitOrder::run(&save_turns, &emit_turns, done, handle).await;
            })
        }

        /// Waits for every event; `what` says what a hang means.
        async fn all_done(
            &self,
            events: Vec<tokio::task::JoinHandle<()>>,
            what: &str,
        ) -> Vec<String> {
            tokio::time::timeout(std::time::Duration::from_secs(5), async {
                for e in events {
                    e.await.unwrap();
                }
            })
            .await
            .expect(what);
            self.log.lock().unwrap().clone()
        }
    }

    #[derive(Clone)]
    struct Log(Arc<std::sync::Mutex<Vec<String>>>);

    impl Log {
        fn push(&self, line: String) {
            self.0.lock().unwrap().push(line);
        }
    }

    fn lines(log: &[String], kind: &str) -> Vec<String> {
        log.iter()
            .filter(|l| l.starts_with(kind))
            .cloned()
            .collect()
    }

    /// Two events of one socket, as the dispatcher runs them: the second is saved while the
    /// first one's emission is still on its way, and the emissions keep their order.
    #[tokio::test]
    async fn the_next_event_is_saved_while_this_one_emits_and_emissions_keep_their_order() {
        let socket = TestSocket::default();
        let publish_a = Arc::new(tokio::sync::Notify::new());
        let event = |name: &'static str,
                     slow: Option<Arc<tokio::sync::Notify>>,
                     wake: Option<Arc<tokio::sync::Notify>>| {
            socket.event(move |log| {
                Box::pin(async move {
                    log.push(format!("save {name}"));
                    if let Some(wake) = wake {
                        wake.notify_one();
                    }
                    wait_for_emit_turn().await;
                    if let Some(slow) = slow {
                        slow.notified().await;
                    }
                    log.push(format!("emit {name}"));
                })
            })
        };
        let a = event("a", Some(publish_a.clone()), None);
        // b's save lets a's publish finish: without pipelining b would wait for a forever.
        let b = event("b", None, Some(publish_a));
        let c = event("c", None, None);
        let log = socket
            .all_done(
                vec![a, b, c],
                "the second event must start while the first one emits",
            )
            .await;
        assert_eq!(&log[..2], ["save a", "save b"]);
        assert_eq!(lines(&log, "emit"), ["emit a", "emit b", "emit c"]);
    }

    /// An event that emits nothing passes the emission turn on only after the previous event's
    /// emissions, so a later event's emission cannot overtake them.
    #[tokio::test]
    async fn an_event_without_emissions_does_not_let_a_later_emission_overtake() {
        let socket = TestSocket::default();
        let publish_a = Arc::new(tokio::sync::Notify::new());
        let slow = publish_a.clone();
        let a = socket.event(|log| {
            Box::pin(async move {
                wait_for_emit_turn().await;
                slow.notified().await;
                log.push("emit a".into());
            })
        });
        let b = socket.event(|_| Box::pin(async {})); // a read: no emission
        let c = socket.event(|log| {
            Box::pin(async move {
                // Let a finish only once c is ready to emit.
                publish_a.notify_one();
                wait_for_emit_turn().await;
                log.push("emit c".into());
            })
        });
        let log = socket.all_done(vec![a, b, c], "every event ends").await;
        assert_eq!(log, ["emit a", "emit c"]);
    }

    /// Two sends of one socket: the second reads its chat while the first one saves, and saves
    /// only after it.
    #[tokio::test]
    async fn the_next_event_reads_while_this_one_saves_and_saves_keep_their_order() {
        let socket = TestSocket::default();
        let save_a = Arc::new(tokio::sync::Notify::new());
        let event = |name: &'static str,
                     slow: Option<Arc<tokio::sync::Notify>>,
                     wake: Option<Arc<tokio::sync::Notify>>| {
            socket.event(move |log| {
                Box::pin(async move {
                    log.push(format!("read {name}"));
                    if let Some(wake) = wake {
                        wake.notify_one();
                    }
                    wait_for_save_turn().await;
                    if let Some(slow) = slow {
                        slow.notified().await;
                    }
                    log.push(format!("save {name}"));
                    wait_for_emit_turn().await;
                    log.push(format!("emit {name}"));
                })
            })
        };
        let a = event("a", Some(save_a.clone()), None);
        // b's read lets a's save finish: without the save turn b would wait for a forever.
        let b = event("b", None, Some(save_a));
        let c = event("c", None, None);
        let log = socket
            .all_done(
                vec![a, b, c],
                "the second event must start while the first one saves",
            )
            .await;
        assert_eq!(&log[..2], ["read a", "read b"]);
        assert_eq!(lines(&log, "save"), ["save a", "save b", "save c"]);
        assert_eq!(lines(&log, "emit"), ["emit a", "emit b", "emit c"]);
    }

    #[tokio::test]
    async fn an_event_that_never_ran_does_not_block_the_next() {
        let turns = Turns::default();
        let (first, first_done) = turns.take();
        let (second, _second_done) = turns.take();
        drop(first);
        drop(first_done);
        second.await;
    }
}
