//! Presence transitions: a socket comes or goes, and a user's first or last socket anywhere
//! is announced (`user:status`) to staff and their chat partners.

use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::cluster::rooms;
use crate::config::Config;
use crate::domain::{AuthUser, parse_plain_id};
use crate::error::{AppError, ErrorCode};
use crate::metrics::Metrics;
use crate::ordering::Turn;
use crate::presence::{Presence, PresenceError, SocketEntry, SocketPage, UserPresence};
use crate::service::desk::availability::Support;
use crate::service::emit::Emitter;
use crate::service::events::UserStatus;
use crate::state::readiness::Readiness;
#[cfg(any(test, feature = "test-support"))]
use crate::state::test_hooks::TestHooks;
use crate::state::{AppState, OfflineClaims, Session};
use crate::store::Store;
use crate::webhooks::{Pledged, Publisher};

/// How long past the grace a departing user's node claims their `offline`: the due time was
/// taken (in presence) just before the timer started.
const DUE_MARGIN: Duration = Duration::from_millis(20);

/// A presence failure as clients see it (the cause goes to the logs only).
fn presence_error(e: PresenceError) -> AppError {
    match e {
        PresenceError::BadCursor => AppError::validation("malformed cursor"),
        PresenceError::Unavailable(cause) => {
            tracing::warn!(error = %cause, "presence unavailable");
            AppError::new(ErrorCode::Unavailable, "presence is unavailable")
        }
    }
}

/// The presence use cases: sockets come and go, users' statuses are announced.
#[derive(Clone, Copy)]
pub struct Statuses<'a> {
    /// Who is online, cluster-wide.
    presence: &'a dyn Presence,
    /// The chat partners an announcement goes to.
    store: &'a dyn Store,
    /// `OFFLINE_GRACE_SECS`.
    config: &'a Config,
    /// This node's name in presence.
    node_id: &'a str,
    /// Users online.
    metrics: &'a Metrics,
    /// Every presence answer marks Redis reachable.
    readiness: &'a Readiness,
    /// Records the role each identity's tokens name, for webhooks.
    webhooks: &'a Publisher,
    /// One claim of due `offline` announcements at a time.
    offline_claims: &'a OfflineClaims,
    /// `user:status`.
    emitter: Emitter<'a>,
    /// Staff members' availability follows their presence.
    support: Support<'a>,
    /// Only to start a departing user's grace timer, a task that outlives this borrow.
    node: &'a AppState,
    /// Races a test needs to happen every time (`test-support` only).
    #[cfg(any(test, feature = "test-support"))]
    test_hooks: &'a TestHooks,
}

impl<'a> Statuses<'a> {
    /// The node's presence use cases.
    pub fn of(node: &'a AppState) -> Self {
        Statuses {
            presence: &*node.presence,
            store: &*node.store,
            config: &node.config,
            node_id: &node.node_id,
            metrics: &node.metrics,
            readiness: &node.readiness,
            webhooks: &node.webhooks,
            offline_claims: &node.offline_claims,
            emitter: Emitter::of(node),
            support: Support::of(node),
            node,
            #[cfg(any(test, feature = "test-support"))]
            test_hooks: &node.test_hooks,
        }
    }

    /// One page of every socket in the cluster (staff only). `limit` is parsed only once the
    /// caller is known to be staff, so a user is told `FORBIDDEN`, whatever the limit.
    pub async fn active_sockets(
        &self,
        user: &AuthUser,
        cursor: Option<&str>,
        limit: impl FnOnce() -> Result<usize, AppError>,
    ) -> Result<SocketPage, AppError> {
        if !user.is_staff() {
            return Err(AppError::forbidden("only staff list active users"));
        }
        let limit = limit()?;
        if cursor.is_some_and(|c| c.len() > 256) {
            return Err(AppError::validation("malformed cursor"));
        }
        self.presence
            .sockets(cursor, limit)
            .await
            .map_err(presence_error)
    }

    /// A user's presence: staff ask about anyone, a user about themself only.
    pub async fn user_presence(
        &self,
        user: &AuthUser,
        user_id: &str,
    ) -> Result<UserPresence, AppError> {
        // A user id no token can carry (over 64 characters, control characters) is malformed,
        // not merely offline (found by schemathesis: it answered `200 offline`).
        parse_plain_id("userId", user_id)?;
        if !user.is_staff() && user.id != user_id {
            return Err(AppError::forbidden("users see their own status only"));
        }
        self.presence.status(user_id).await.map_err(presence_error)
    }

    /// `OFFLINE_GRACE_SECS`.
    fn offline_grace(&self) -> Duration {
        self.config.offline_grace
    }

    /// Whether a user with no socket left is still inside the offline grace (still `online`
    /// to everyone: the status API, and no `offline` announced yet).
    pub fn in_offline_grace(&self, p: &UserPresence) -> bool {
        p.sockets == 0
            && p.last_seen.is_some_and(|seen| {
                (crate::domain::now() - seen)
                    .to_std()
                    .is_ok_and(|gone| gone < self.offline_grace())
            })
    }

    /// Registers a socket in presence; announces `online` if it is the user's first anywhere,
    /// unless the user's last socket went away inside the grace (a reload, a blip, a drain the
    /// user came back from): then `offline` was never announced, and neither is `online`
    /// (presence knows: the user's `offline` is still due).
    ///
    /// Every registration (the connect handler's, a legacy `user:online`) passes here, and none
    /// can leave a socket that is gone behind: the disconnect marks the session gone *before* it
    /// takes the socket out, and a registration checks the mark *after* its own write is done,
    /// so either the disconnect's removal comes after this write, or this check sees the mark
    /// and removes the socket itself.
    pub async fn socket_online(&self, socket_id: &str, session: &Session, turn: Turn) {
        if session.is_gone() {
            return;
        }
        let entry = SocketEntry {
            user_id: session.user.id.clone(),
            socket_id: socket_id.to_owned(),
            user_name: session.user.name.clone(),
            user_role: session.user.role,
            connected_at: session.connected_at,
            node: self.node_id.to_owned(),
        };
        #[cfg(any(test, feature = "test-support"))]
        self.test_hooks.before_registration(socket_id).await;
        // `connect` says `false` for a user back inside the grace (their `offline` was still
        // due, and presence dropped it in the same step): no status read first, which a storm
        // of handshakes would pay once per socket.
        self.webhooks.note_role(&entry.user_id, entry.user_role);
        // `user.online` is pledged ahead of the connect that may make the transition (which
        // records the pledge's id): a node killed between the two loses no webhook
        // (`webhooks/pledges.rs`).
        let pledged = self.webhooks.pledge_status(&entry.user_id, true).await;
        let mark = pledged.as_ref().map(|p| p.id.as_str());
        match self.presence.connect_marked(&entry, mark).await {
            Ok(true) => {
                self.readiness.adapter.note_answer();
                self.announce_status(&entry.user_id, true, turn, pledged)
                    .await;
            }
            Ok(false) => {
                self.readiness.adapter.note_answer();
                self.webhooks.unpledge(pledged).await;
            }
            // The connect may have landed: the reconcile pass settles the pledge from the mark.
            Err(e) => tracing::warn!(error = %e, "presence connect failed"),
        }
        if session.user.is_staff() {
            self.support.staff_socket_online(&entry.user_id).await;
        }
        if session.is_gone() {
            self.remove_socket(&entry.user_id, socket_id).await;
        }
    }

    /// Removes a disconnected socket from presence for good; if it was the user's last,
    /// `offline` follows after the grace unless a socket of theirs comes back meanwhile.
    pub async fn socket_offline(&self, socket_id: &str, session: &Session) {
        session.mark_gone();
        self.remove_socket(&session.user.id, socket_id).await;
        #[cfg(any(test, feature = "test-support"))]
        self.test_hooks.departed(socket_id);
    }

    async fn remove_socket(&self, user_id: &str, socket_id: &str) {
        match self.presence.disconnect(user_id, socket_id).await {
            Ok(true) => {
                self.readiness.adapter.note_answer();
                self.offline_after_grace().await;
            }
            Ok(false) => self.readiness.adapter.note_answer(),
            Err(e) => tracing::warn!(error = %e, "presence disconnect failed"),
        }
    }

    /// A user's last socket is gone (a disconnect, a drain, a dead node reaped): presence noted
    /// their `offline` as due once `OFFLINE_GRACE_SECS` have passed (unless a socket of theirs
    /// comes back first, which drops it). This node claims what is due when that grace ends;
    /// every node also claims at each heartbeat ([`Statuses::announce_due_offline`]), so the
    /// announcement does not depend on this node living that long (a drain, a SIGKILL): of all
    /// the claims, exactly one gets each due user. One task per departing user (not per socket).
    pub async fn offline_after_grace(&self) {
        let grace = self.offline_grace();
        if grace.is_zero() {
            return self.announce_due_offline().await;
        }
        let state = self.node.clone();
        tokio::spawn(async move {
            // A little past the grace: the due time was taken a moment before this timer.
            tokio::time::sleep(grace + DUE_MARGIN).await;
            Statuses::of(&state).announce_due_offline().await;
        });
    }

    /// Claims the `offline` announcements that are due (see [`Statuses::offline_after_grace`])
    /// and sends them. Called by the heartbeat too, on every node.
    pub async fn announce_due_offline(&self) {
        let claims = &self.offline_claims;
        claims.wanted.store(true, Ordering::SeqCst);
        loop {
            // A round under way claims again for this caller (`wanted`).
            let Ok(running) = claims.running.try_lock() else {
                return;
            };
            while claims.wanted.swap(false, Ordering::SeqCst) {
                match self.claim_due_offline().await {
                    Ok(users) => self.announce_offline(users).await,
                    // They stay due: the next heartbeat's claim takes them.
                    Err(e) => {
                        tracing::warn!(error = %e, "could not claim due offline announcements");
                        return;
                    }
                }
            }
            drop(running);
            // Asked for between the last claim and the release: go round again.
            if !claims.wanted.load(Ordering::SeqCst) {
                return;
            }
        }
    }

    /// Claims the due `offline`s, each with its `user.offline` pledged ahead of the claim when
    /// an endpoint takes it (the claim records the pledge's id: a node killed between the claim
    /// and the event's write loses no webhook, `webhooks/pledges.rs`); the pledges of users not
    /// claimed after all (another node's claim, back online) are forgotten.
    async fn claim_due_offline(&self) -> Result<Vec<(String, Option<Pledged>)>, PresenceError> {
        if !self.webhooks.wants("user.offline") {
            let users = self.presence.claim_due_offline().await?;
            return Ok(users.into_iter().map(|u| (u, None)).collect());
        }
        let due = self.presence.due_offline().await?;
        let mut pledges = Vec::with_capacity(due.len());
        for user in due {
            self.know_role(&user).await;
            let pledged = self.webhooks.pledge_status(&user, false).await;
            pledges.push((user, pledged));
        }
        // A user whose pledge could not be written is claimed as before (a mark no pledge
        // waits for): their event is written ahead of the emission only.
        let marks: Vec<(String, String)> = pledges
            .iter()
            .map(|(u, p)| {
                let mark = p
                    .as_ref()
                    .map_or_else(crate::webhooks::fresh_id, |p| p.id.clone());
                (u.clone(), mark)
            })
            .collect();
        // On an error the pledges stay: the claim may have landed, the reconcile pass knows.
        let claimed = self.presence.claim_offline_marked(&marks).await?;
        let mut out = Vec::with_capacity(claimed.len());
        for (user, pledged) in pledges {
            if claimed.contains(&user) {
                out.push((user, pledged));
            } else {
                self.webhooks.unpledge(pledged).await;
            }
        }
        Ok(out)
    }

    /// Announces `offline` for `users`, their chat partners read in batches (one store read per
    /// [`OFFLINE_BATCH`] users, not one per user).
    async fn announce_offline(&self, users: Vec<(String, Option<Pledged>)>) {
        let mut pledges: std::collections::HashMap<String, Pledged> = users
            .iter()
            .filter_map(|(u, p)| p.clone().map(|p| (u.clone(), p)))
            .collect();
        let users: Vec<String> = users.into_iter().map(|(u, _)| u).collect();
        for chunk in users.chunks(OFFLINE_BATCH) {
            // The staff among them go `offline` for the support desk too.
            self.support.staff_gone(chunk).await;
            let partners = match self
                .store
                .chat_partners_of(chunk)
                .await
                .map_err(AppError::from)
            {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(error = %e.message, users = chunk.len(), "could not load chat partners; telling admins only");
                    chunk.iter().map(|u| (u.clone(), Vec::new())).collect()
                }
            };
            for (user, partners) in partners {
                self.metrics.presence_users_online.dec();
                let pledged = pledges.remove(&user);
                self.emit_status(&user, false, &partners, Turn::unordered(), pledged)
                    .await;
            }
        }
    }

    /// At start: announces the `offline`s a drain of this node left due (`due_ms`: when, in ms
    /// since the epoch), each when it falls due, unless the user came back first. Those
    /// already due go out at once.
    pub async fn announce_restored_offline(&self, mut due_ms: Vec<i64>) {
        due_ms.sort_unstable();
        due_ms.dedup();
        for due in due_ms {
            let wait = due.saturating_sub(crate::domain::now().timestamp_millis());
            tokio::time::sleep(Duration::from_millis(u64::try_from(wait).unwrap_or(0))).await;
            self.announce_due_offline().await;
        }
    }

    /// Sends `user:status` to `admins` and the participants of the user's open chats.
    /// `pledged`: its `user.*` webhook, written ahead (`webhooks/pledges.rs`).
    pub async fn announce_status(
        &self,
        user_id: &str,
        online: bool,
        turn: Turn,
        pledged: Option<Pledged>,
    ) {
        if online {
            self.metrics.presence_users_online.inc();
        } else {
            self.metrics.presence_users_online.dec();
        }
        let partners = match self
            .store
            .chat_partners(user_id)
            .await
            .map_err(AppError::from)
        {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e.message, "could not load chat partners; telling admins only");
                Vec::new()
            }
        };
        self.emit_status(user_id, online, &partners, turn, pledged)
            .await;
    }

    async fn emit_status(
        &self,
        user_id: &str,
        online: bool,
        partners: &[String],
        turn: Turn,
        pledged: Option<Pledged>,
    ) {
        let mut targets: Vec<String> = partners.iter().map(|p| rooms::user(p)).collect();
        targets.push(rooms::ADMINS.to_owned());
        if !online {
            self.know_role(user_id).await;
        }
        let payload = UserStatus {
            user_id,
            status: if online { "online" } else { "offline" },
        };
        self.emitter
            .emit_pledged(
                targets,
                vec![rooms::user(user_id)],
                &payload,
                pledged.as_ref(),
                turn,
            )
            .await;
    }

    /// Makes sure this node knows `user_id`'s role for their `user.offline`.
    async fn know_role(&self, user_id: &str) {
        if self.webhooks.enabled() && !self.webhooks.knows_role(user_id) {
            // Another node held their sockets (it died or drained): `user.offline` carries the
            // role PROTOCOL.md requires, from the directory every handshake writes.
            match self.store.known_user(user_id).await {
                Ok(Some(known)) => self.webhooks.note_role(user_id, known.role),
                Ok(None) => tracing::warn!(user_id, "user.offline: role unknown to the directory"),
                Err(e) => {
                    tracing::warn!(user_id, error = %e, "user.offline: directory unavailable")
                }
            }
        }
    }
}

/// How many departing users' chat partners one store read fetches.
const OFFLINE_BATCH: usize = 500;
