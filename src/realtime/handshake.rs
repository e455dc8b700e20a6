//! The Socket.IO handshake: authenticate in the middleware (nothing runs for a refused socket),
//! make the socket's [`Session`], join its rooms and wire its dispatcher before the CONNECT
//! packet leaves; then register it in presence, and take it out when it disconnects. And the
//! end of a socket whose token expires ([`close_expired`]).

use std::sync::Arc;

use socketioxide::adapter::Adapter;
use socketioxide::extract::{AckSender, Event, SocketRef, TryData};
use socketioxide::socket::DisconnectReason;
use socketioxide_core::adapter::DefinedAdapter;

use super::admission::Admission;
use super::ctx::Ctx;
use super::dispatch::{HasAck, Routes, dispatch};
use crate::cluster::rooms;
use crate::domain::Role;
use crate::error::{AppError, ErrorCode};
use crate::metrics::ConnectionOutcome;
use crate::ordering::Turn;
use crate::recovery::Pid;
use crate::state::{Accepted, AppState, Session};

/// Why a handshake was refused. Its text is the `connect_error` message, which PROTOCOL.md
/// has start with the code (socket.io-client users read `err.message`):
/// `UNAUTHORIZED: invalid token (expired)`.
#[derive(Debug)]
pub struct Refused {
    pub code: ErrorCode,
    pub reason: String,
}

impl Refused {
    fn new(code: ErrorCode, reason: impl Into<String>) -> Self {
        Self {
            code,
            reason: reason.into(),
        }
    }
}

impl From<AppError> for Refused {
    fn from(e: AppError) -> Self {
        Self::new(e.code, e.message)
    }
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.reason)
    }
}

/// The reason of a resume whose session could not be read: its transport is closed (the
/// client never sees this text) and the client retries with the same `pid` and offset.
const RESUME_RETRY: &str = "the recovery session could not be read; reconnect";

/// The handshake's `auth` object. `pid` and `offset` are what socket.io-client adds when it
/// resumes a connection state recovery session; taken as any JSON, so a malformed one is a
/// refused resume (a new session), not a refused handshake. Public for the fuzzer
/// (`fuzz/fuzz_targets/handshake_auth.rs`), which reads it as the middleware does.
#[derive(serde::Deserialize)]
pub struct Handshake {
    pub token: String,
    #[serde(default)]
    pub pid: Option<serde_json::Value>,
    #[serde(default)]
    pub offset: Option<serde_json::Value>,
}

impl Handshake {
    /// What the handshake asks to resume: `None` without a `pid`; else the `pid` and the
    /// offset (a null one is none) as text, or `Malformed` when either is not a string.
    pub fn resume(&self) -> Option<Result<(&str, Option<&str>), crate::recovery::Refusal>> {
        let pid = self.pid.as_ref()?;
        let offset = self.offset.as_ref().filter(|o| !o.is_null());
        Some(match (pid.as_str(), offset.map(|o| o.as_str())) {
            (Some(pid), None) => Ok((pid, None)),
            (Some(pid), Some(Some(offset))) => Ok((pid, Some(offset))),
            _ => Err(crate::recovery::Refusal::Malformed),
        })
    }
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
            let outcome = authenticate(&state, &routes, &s, auth).await;
            state.metrics.connection(match &outcome {
                Ok(()) => ConnectionOutcome::Accepted,
                Err(r) => match r.code {
                    ErrorCode::Unavailable if r.reason == RESUME_RETRY => {
                        ConnectionOutcome::ResumeRetry
                    }
                    ErrorCode::Unavailable => ConnectionOutcome::Draining,
                    ErrorCode::RateLimited => ConnectionOutcome::RateLimited,
                    _ => ConnectionOutcome::Unauthorized,
                },
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

async fn authenticate<A: Adapter>(
    state: &AppState,
    routes: &Arc<Routes<A>>,
    s: &SocketRef<A>,
    auth: Result<Handshake, socketioxide::ParserError>,
) -> Result<(), Refused> {
    // New sessions are refused with HTTP 503 while draining (`http/admission.rs`); this is the
    // narrow race of an Engine.IO session opened just before the drain began.
    if state.drain.is_draining() {
        return Err(Refused::new(
            ErrorCode::Unavailable,
            "this node is draining; reconnect",
        ));
    }
    let auth = auth.map_err(|_| Refused::new(ErrorCode::Unauthorized, "auth.token is missing"))?;
    // The token is verified on a resume too, and must name the session's user (`check`).
    let verified = state
        .keys
        .verifier
        .verify_token(&auth.token)
        .map_err(Refused::from)?;
    let (user, token_until) = (verified.user, verified.until);
    // A blocked user, or a revoked token, is refused on every node (`service/desk`). The
    // identity's role goes to the user directory meanwhile (the removal rule reads it).
    let removals = state.removals();
    let (removal, ()) = tokio::join!(
        removals.check_removal(&user, verified.issued_at),
        state.directory.see(&user)
    );
    let removal = removal.map_err(Refused::from)?;
    // Released however the handshake ends (see `admission.rs`).
    let admission = admit_socket(state, s.id, &user.id).await?;
    let resume = match (&state.recovery, auth.resume()) {
        (Some(recovery), Some(asked)) => {
            // Every resume reads the log and may replay 500 events: each user has a budget of
            // them on this node. Beyond it the socket gets a new session, as socket.io-client
            // expects of any resume the server cannot serve (`recovered` false), not a
            // `connect_error`, which socket.io-client would not retry.
            let budget = state.user_limits.take_resume(&user.id);
            let checked = match (budget, asked) {
                (Err(_), _) => Err(crate::recovery::Refusal::RateLimited),
                (Ok(()), Ok((pid, offset))) => recovery.check(pid, offset, &user.id).await,
                (Ok(()), Err(refusal)) => Err(refusal),
            };
            // A recovery must not resurrect a session its user was removed from (or one whose
            // removal could not be read).
            let checked = checked.and_then(|claim| {
                if removal.allows_resume(claim.session.started_ms) {
                    Ok(claim)
                } else {
                    Err(crate::recovery::Refusal::Unknown)
                }
            });
            match checked {
                Ok(claim) => {
                    state.readiness.adapter.note_answer();
                    Some(claim)
                }
                // Not known to be refused: a session that exists must not become a new one
                // (`recovered: false`) because Redis was slow. The transport is closed before
                // any answer, so socket.io-client reconnects by itself, with its back-off and
                // the same `pid` and offset, and is recovered once Redis answers.
                Err(crate::recovery::Refusal::Unavailable) => {
                    state
                        .metrics
                        .recovery
                        .attempt(Err(crate::recovery::Refusal::Unavailable));
                    tracing::info!(user_id = %user.id, "recovery session unreadable: transport closed for a retry");
                    s.close_transport();
                    return Err(Refused::new(ErrorCode::Unavailable, RESUME_RETRY));
                }
                Err(refusal) => {
                    state.metrics.recovery.attempt(Err(refusal));
                    tracing::debug!(user_id = %user.id, reason = refusal.as_str(), "recovery refused: new session");
                    None
                }
            }
        }
        _ => None,
    };
    let pid = state.recovery.as_ref().map(|_| {
        resume
            .as_ref()
            .map_or_else(Pid::generate, |c| c.session.pid.clone())
    });
    if let Some(pid) = &pid {
        s.set_connect_pid(pid.as_str());
    }
    if resume.is_some() {
        // Broadcasts wait until the replay is written (see `recovery::replay`). The read of
        // what the session missed cannot come here, before the answer: until the middleware
        // returns, the socket is not in its namespace, and a broadcast to its rooms skips it
        // (neither sent nor held), so an event logged after such a read would be lost.
        s.hold_broadcasts();
    }
    let session = Arc::new(Session::new(user, state.config.rate_limit_per_sec, pid));
    let replay_turn = resume.as_ref().map(|_| session.turns.take().1);
    state.handshakes.insert(
        s.id,
        Accepted {
            session: session.clone(),
            resume,
            replay_turn,
        },
    );
    wire(state, routes, s, &session, token_until, admission);
    Ok(())
}

/// Counts the socket against `MAX_SOCKETS_PER_USER`: presence's count of the user's sockets in
/// the cluster, and this node's own count (exact, so a burst of handshakes to one node cannot
/// all pass before any is registered). Presence unreachable: only this node's count applies.
async fn admit_socket(
    state: &AppState,
    sid: socketioxide::socket::Sid,
    user_id: &str,
) -> Result<Admission, Refused> {
    let max = state.config.max_sockets_per_user;
    let cluster = tokio::time::timeout(PRESENCE_CHECK_TIMEOUT, state.presence.status(user_id))
        .await
        .ok()
        .and_then(Result::ok)
        .map_or(0, |p| p.sockets);
    match state.user_limits.add_socket(user_id, cluster, max) {
        Some(key) => Ok(Admission::new(state, sid, key)),
        None => Err(Refused::new(
            ErrorCode::RateLimited,
            format!("at most {max} sockets per user (MAX_SOCKETS_PER_USER)"),
        )),
    }
}

/// How long a handshake waits for presence's count of the user's sockets.
const PRESENCE_CHECK_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(500);

/// Joins the socket's rooms and registers its event dispatcher. Called from the handshake
/// middleware, before the CONNECT packet leaves: socketioxide runs an async connect handler as
/// a task of its own, after CONNECT is sent, so a client that emits as soon as it is connected
/// (or a message sent to its room just then) could otherwise find no handler (the event would
/// be dropped silently) or no room. Nothing is emitted here.
///
/// `token_until` (the token's `exp` plus the leeway) is when [`close_expired`] ends the socket.
/// The `admission` moves into the disconnect handler: released there, or dropped with the
/// socket's handlers if the socket never enters the namespace (its client hung up first).
fn wire<A: Adapter>(
    state: &AppState,
    routes: &Arc<Routes<A>>,
    s: &SocketRef<A>,
    session: &Arc<Session>,
    token_until: Option<u64>,
    mut admission: Admission,
) {
    let user = &session.user;
    s.join(joined_rooms(user));
    admission.wired(token_until.and_then(|until| state.expiries.watch(s.id, until)));
    // Shared by the handler and the clone socketioxide runs: the last one dropped releases.
    let admission = Arc::new(admission);
    tracing::debug!(node = %state.node_id, socket_id = %s.id, user_id = %user.id, role = user.role.as_str(), "socket connected");

    let ctx = Ctx {
        state: state.clone(),
        socket_id: s.id,
        session: session.clone(),
    };
    let disconnect_ctx = ctx.clone();
    s.on_disconnect(move |s: SocketRef<A>, reason: DisconnectReason| {
        let ctx = disconnect_ctx.clone();
        let admission = admission.clone();
        async move {
            // The socket count, the expiry watch, the gauge, and the handshake (its connect
            // handler may not have run).
            admission.release();
            if let (Some(recovery), Some(pid)) = (&ctx.state.recovery, &ctx.session.pid) {
                let sid = s.id.to_string();
                // Only a session its client ended is forgotten; a drop is kept for the window.
                let result = match reason {
                    DisconnectReason::ClientNSDisconnect | DisconnectReason::ServerNSDisconnect => {
                        recovery.ended(pid, &sid).await
                    }
                    _ => recovery.dropped(pid, &sid).await,
                };
                if let Err(e) = result {
                    tracing::warn!(error = %e, "could not keep the recovery session");
                }
            }
            tracing::debug!(node = %ctx.state.node_id, socket_id = %s.id, user_id = %ctx.session.user.id, ?reason, "socket disconnected");
            ctx.state.statuses().socket_offline(&s.id.to_string(), &ctx.session).await;
        }
    });
    let routes = routes.clone();
    s.on_fallback(
        move |s: SocketRef<A>,
              Event(event): Event,
              TryData(data): TryData<serde_json::Value>,
              ack: AckSender<A>,
              HasAck(has_ack): HasAck| {
            dispatch(&routes, &ctx, s, event, data, ack, has_ack)
        },
    );
}

/// The room of a user's role: `users` or `admins`.
fn role_room(user: &crate::domain::AuthUser) -> &'static str {
    if user.role == Role::User {
        rooms::USERS
    } else {
        rooms::ADMINS
    }
}

/// The rooms a user's sockets are in: their own and their role's.
fn user_rooms(user: &crate::domain::AuthUser) -> Vec<String> {
    vec![rooms::user(&user.id), role_room(user).to_owned()]
}

/// [`user_rooms`] as the adapter keeps them: the role's room borrowed from a constant, so the
/// adapter's two indexes (room -> sockets, socket -> rooms) hold no copy of it per socket.
fn joined_rooms(user: &crate::domain::AuthUser) -> Vec<socketioxide_core::adapter::Room> {
    vec![rooms::user(&user.id).into(), role_room(user).into()]
}

/// Opens or resumes the socket's recovery session (replaying what it missed), then registers
/// it in presence (which may announce the user online).
async fn on_connect<A: Adapter>(state: AppState, s: SocketRef<A>) {
    let Some(Accepted {
        session,
        resume,
        replay_turn,
    }) = state.handshakes.take(s.id)
    else {
        tracing::error!("socket connected without a session; closing it");
        let _ = s.disconnect();
        return;
    };
    let socket_id = s.id.to_string();
    if let (Some(recovery), Some(pid)) = (&state.recovery, &session.pid) {
        let rooms = user_rooms(&session.user);
        match resume {
            Some(claim) => {
                super::recovery::replay(&state, recovery, &s, claim, &rooms, &session.user).await;
                drop(replay_turn);
            }
            None => {
                if let Err(e) = recovery
                    .open(pid, &session.user.id, &rooms, &socket_id)
                    .await
                {
                    tracing::warn!(error = %e, "could not open a recovery session");
                }
            }
        }
    }
    // A socket that left while it was being registered is taken out again there.
    state
        .statuses()
        .socket_online(&socket_id, &session, Turn::unordered())
        .await;
}

/// How often [`close_expired`] looks for sockets whose token ran out.
const EXPIRY_SWEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// The sweeper of token expiries: one per node. Every second, closes the transport of each
/// socket whose token's `exp` plus the leeway has passed (the transport, not the namespace
/// socket: socket.io-client then reconnects by itself, and its next handshake checks a fresh
/// token; a recoverable session resumes). A socket closed this way goes through its ordinary
/// disconnect.
pub async fn close_expired(state: AppState) {
    let mut tick = tokio::time::interval(EXPIRY_SWEEP_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        for sid in state.expiries.take_due(now) {
            if state.sockets.close_transport(sid) {
                state.metrics.sockets_expired.inc();
                tracing::debug!(node = %state.node_id, socket_id = %sid, "token expired: transport closed");
            }
        }
    }
}
