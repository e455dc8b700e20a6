//! Delivery status: the triggers that make a message `delivered`, their coalesced store write
//! and the `message:delivered` event (`docs/delivery.md` has the lifecycle and why it is
//! cluster-correct).
//!
//! Every trigger is noted in the node's [`DeliveryTracker`](crate::state::DeliveryTracker) under
//! (chat, recipient side); the first one of a quiet (chat, side) starts a flusher, which flushes
//! [`FLUSH_AFTER`] later (the highest `seq`, written with the store's forward-only
//! `advance_delivered`; when the mark moved, one `message:delivered`), then once per
//! [`COOLDOWN`] for as long as triggers keep coming. A quiet chat's message is marked delivered
//! within milliseconds; a busy chat costs at most one store write and one event per side and
//! cooldown, however many messages it carries. Nothing is written per socket.
//!
//! Who a message's recipients are is PROTOCOL.md's rule ([`Chat::is_recipient`]): for a staff
//! message, the chat's user; for a user's message, the chat's staff participants, or every
//! staff member while it has none. A staff member who sees the chat only through `admins` is no
//! recipient: their live receipt, fetch, replay or confirmation delivers nothing.
//!
//! A message whose recipient has a socket on the sender's node is marked delivered by its own
//! save (the same write that takes its `seq`: [`Deliveries::recipient_here`]); its flush only
//! announces it. Other live deliveries are decided by the node that emitted `message:new` (the
//! sender's node): at the flush it asks whether a recipient socket is connected anywhere in the
//! cluster (the chat's user in presence; the chat's staff participants in presence; with no
//! staff participant, any staff member in presence). Every socket of a user is in `user:{id}`
//! and every staff socket in `admins` on whatever node holds it, so a connected recipient got
//! the broadcast. Only one node decides per message, and the forward-only write lets one
//! transition through when several triggers race, so a recipient with sockets on two nodes
//! yields one transition.

use std::time::Duration;

use crate::cluster::rooms;
use crate::domain::{
    AuthUser, Chat, ChatId, HistoryPage, Message, MessageId, MessageStatus, Side, now,
};
use crate::error::AppError;
use crate::ordering::Turn;
use crate::presence::Presence;
use crate::service::chat_access::chat_for;
use crate::service::emit::Emitter;
use crate::service::events::MessageDelivered;
use crate::state::{
    AppState, DeliveryMark, DeliveryPending, DeliveryTracker, DeliveryTrigger, LocalSockets,
    UserLimits,
};
use crate::store::Store;

/// How long the first triggers for a quiet (chat, side) gather before their one store write.
pub const FLUSH_AFTER: Duration = Duration::from_millis(5);

/// After a flush, how long further triggers for the same (chat, side) gather before the next
/// one: the bound on how late a busy chat's second check mark shows, and what keeps a sender
/// of many messages per second from costing a store write and a `message:delivered` fan-out
/// per message (`loadtest/README.md` has the figures).
pub const COOLDOWN: Duration = Duration::from_secs(1);

/// How far back a confirmation naming the caller's own message looks for the newest message of
/// the other side.
const CONFIRM_LOOKBACK: usize = 100;

/// Delivery status's use cases: the other use cases call it once a message went out or was
/// fetched (a collaborator after the emission, never inside it), and the client's
/// `message:delivered` comes here.
#[derive(Clone, Copy)]
pub struct Deliveries<'a> {
    /// Reads the messages a confirmation names; writes the forward-only delivery marks.
    store: &'a dyn Store,
    /// Whether a recipient is connected anywhere in the cluster, at a flush.
    presence: &'a dyn Presence,
    /// Staff sockets in this node's `admins` room.
    sockets: &'a dyn LocalSockets,
    /// This node's per-user socket count: a recipient socket here, with no store or presence
    /// call.
    user_limits: &'a UserLimits,
    /// Triggers waiting for their coalesced write.
    tracker: &'a DeliveryTracker,
    /// `message:delivered`.
    emitter: Emitter<'a>,
    /// Only to start a (chat, side)'s flusher, a task that outlives this borrow.
    node: &'a AppState,
}

impl<'a> Deliveries<'a> {
    /// The node's delivery use cases.
    pub fn of(node: &'a AppState) -> Self {
        Deliveries {
            store: &*node.store,
            presence: &*node.presence,
            sockets: &*node.sockets,
            user_limits: &node.user_limits,
            tracker: &node.delivery,
            emitter: Emitter::of(node),
            node,
        }
    }

    /// A recipient of `side` with a socket on this node, if there is one: then the broadcast
    /// that follows a save hands the message to it here, and the save marks it delivered
    /// ([`NewMessage::delivered`](crate::domain::NewMessage)). No store or presence call: the
    /// chat's user and its staff participants are looked up in this node's per-user socket
    /// count (one hash lookup each, however many tabs they have; a socket is counted from its
    /// handshake, just before it joins its rooms); with no staff participant, any staff
    /// socket in this node's `admins` room is a recipient.
    pub(crate) fn recipient_here(&self, side: Side, chat: &Chat) -> Option<String> {
        match side {
            Side::Staff => {
                let mut staff = chat.staff_participants().peekable();
                if staff.peek().is_none() {
                    return self.sockets.user_in_room(rooms::ADMINS);
                }
                staff
                    .find(|s| self.user_limits.has_socket_here(s))
                    .map(str::to_owned)
            }
            Side::User => chat
                .participants
                .first()
                .filter(|user| self.user_limits.has_socket_here(user))
                .cloned(),
        }
    }

    /// `message:new` went out. `delivered_to`: the save already marked it delivered (a
    /// recipient socket is on this node), so only its `message:delivered` is due; otherwise a
    /// live delivery if a recipient socket is connected elsewhere (checked at the flush, once
    /// per window).
    pub(crate) fn note_live_delivery(
        &self,
        chat: &Chat,
        message: &Message,
        delivered_to: Option<String>,
        pledged: Option<crate::webhooks::Pledged>,
    ) {
        let (to, trigger) = match delivered_to {
            Some(to) => (to, DeliveryTrigger::Stored),
            None => (String::new(), DeliveryTrigger::Live),
        };
        let mark = DeliveryMark {
            seq: message.seq,
            message_id: message.id.clone(),
            to,
            at: message.timestamp,
        };
        self.schedule_delivery(chat, message.recipient_side(), mark, trigger, pledged);
    }

    /// `chat:sync` or the REST history returned `messages` to `user`: if `user` is a recipient
    /// of the other side's messages, the newest one that is neither read nor delivered yet
    /// becomes delivered, and every earlier one with it. Written before the caller answers, not
    /// coalesced (one write per fetch that moves the mark), so that every later call shows
    /// `delivered` (PROTOCOL.md). A staff member who is no recipient delivers nothing.
    pub(crate) async fn deliver_fetched(
        &self,
        user: &AuthUser,
        chat: &Chat,
        messages: &[Message],
        turn: Turn,
    ) {
        if !chat.is_recipient(user) {
            return;
        }
        let side = Side::of(user.role);
        let newest = messages
            .iter()
            .filter(|m| {
                m.recipient_side() == side
                    && m.status != MessageStatus::Read
                    && m.seq > chat.delivered.of(side)
            })
            .max_by_key(|m| m.seq);
        if let Some(m) = newest {
            let mark = DeliveryMark {
                seq: m.seq,
                message_id: m.id.clone(),
                to: user.id.clone(),
                at: now(),
            };
            let fetched = DeliveryPending {
                certain: Some(mark),
                live: None,
                stored: None,
                stored_pledge: None,
                superseded: Vec::new(),
                participants: chat.participants.clone(),
                staff: chat.staff_participants().map(str::to_owned).collect(),
            };
            self.flush_delivery(&chat.id, side, fetched, None, turn)
                .await;
        }
    }

    /// Connection state recovery replayed `message:new` events to a socket of `user`: per chat,
    /// the newest replayed message of the other side is delivered (with every earlier one), as
    /// if fetched. `replayed` holds (chat, seq, message) in replay order; one chat read per chat.
    pub(crate) async fn note_replayed(
        &self,
        user: &AuthUser,
        replayed: &[(ChatId, u64, MessageId)],
    ) {
        let side = Side::of(user.role);
        let mut newest: Vec<&(ChatId, u64, MessageId)> = Vec::new();
        for r in replayed {
            match newest.iter_mut().find(|n| n.0 == r.0) {
                Some(n) if n.1 < r.1 => *n = r,
                Some(_) => {}
                None => newest.push(r),
            }
        }
        for (chat_id, seq, message_id) in newest {
            let chat = match chat_for(self.store, user, chat_id).await {
                Ok(chat) => chat,
                Err(e) => {
                    tracing::debug!(chat = %chat_id, error = %e.message, "replayed delivery not noted");
                    continue;
                }
            };
            // A replay to a staff member who is no recipient of the chat delivers nothing.
            if !chat.is_recipient(user) || *seq <= chat.delivered.of(side) {
                continue;
            }
            let mark = DeliveryMark {
                seq: *seq,
                message_id: message_id.clone(),
                to: user.id.clone(),
                at: now(),
            };
            self.schedule_delivery(&chat, side, mark, DeliveryTrigger::Certain, None);
        }
    }

    /// The client's `message:delivered`: every message up to `message_id` that the caller's
    /// side did not send is delivered. Participants and staff only (`FORBIDDEN` otherwise); a
    /// staff member who is no recipient of the chat's messages is answered `ok` and moves
    /// nothing (a confirmation counts only from a recipient).
    pub async fn confirm_delivered(
        &self,
        user: &AuthUser,
        chat_id: &ChatId,
        message_id: &MessageId,
        turn: Turn,
    ) -> Result<(), AppError> {
        let chat = chat_for(self.store, user, chat_id).await?;
        if !chat.is_recipient(user) {
            return Ok(());
        }
        let message = self
            .store
            .message(&chat.id, message_id)
            .await?
            .ok_or_else(|| AppError::not_found("message not found"))?;
        let side = Side::of(user.role);
        let target = if message.recipient_side() == side {
            Some(message)
        } else {
            // The caller's own side sent it: the newest earlier message of the other side.
            let before = self
                .store
                .messages(&chat.id, HistoryPage::Before(message.seq), CONFIRM_LOOKBACK)
                .await?;
            before.into_iter().find(|m| m.recipient_side() == side)
        };
        if let Some(m) = target {
            self.deliver_fetched(user, &chat, std::slice::from_ref(&m), turn)
                .await;
        }
        Ok(())
    }

    /// A read implies delivered: moves the reader side's mark first, without an event, so a
    /// delivery flushed later finds nothing to move and messages read before anything delivered
    /// them go straight to `read`.
    pub(crate) async fn deliver_with_read(
        &self,
        chat: &ChatId,
        reader: Side,
        up_to_seq: u64,
    ) -> Result<(), AppError> {
        self.store
            .advance_delivered(chat, reader, up_to_seq)
            .await?;
        Ok(())
    }

    fn schedule_delivery(
        &self,
        chat: &Chat,
        side: Side,
        mark: DeliveryMark,
        trigger: DeliveryTrigger,
        pledged: Option<crate::webhooks::Pledged>,
    ) {
        if self.tracker.note(chat, side, mark, trigger, pledged) {
            let (state, chat) = (self.node.clone(), chat.id.clone());
            tokio::spawn(async move { Deliveries::of(&state).run_flusher(chat, side).await });
        }
    }

    /// The one flusher of (chat, side): a window [`FLUSH_AFTER`] after the first trigger, then,
    /// while a recipient stays connected, one per [`COOLDOWN`] until a cooldown passes with no
    /// trigger. With no recipient connected (or none checked), the next window is again
    /// [`FLUSH_AFTER`] long: a live mark needs a prompt check of who could have got it.
    async fn run_flusher(&self, chat: ChatId, side: Side) {
        let mut connected = None;
        loop {
            let wait = if connected == Some(true) {
                COOLDOWN
            } else {
                FLUSH_AFTER
            };
            tokio::time::sleep(wait).await;
            match self.tracker.take(&chat, side) {
                Some(pending) => {
                    connected = self
                        .flush_delivery(&chat, side, pending, connected, Turn::unordered())
                        .await;
                }
                None => {
                    if self.tracker.finish_if_idle(&chat, side) {
                        return;
                    }
                }
            }
        }
    }

    /// One window's store write, and its `message:delivered` if the mark moved. Returns
    /// whether a recipient is connected, as last checked (for the next window's live check;
    /// `None` while never checked).
    ///
    /// A live mark counts if a recipient is connected now. A window after a cooldown spans up
    /// to a second, but it only follows a check that found a recipient connected: one who left
    /// inside it leaves its marks `sent` (their next fetch delivers them), and one who was
    /// offline at the last check gets short windows again.
    async fn flush_delivery(
        &self,
        chat: &ChatId,
        side: Side,
        pending: DeliveryPending,
        was_connected: Option<bool>,
        turn: Turn,
    ) -> Option<bool> {
        let stored = pending.stored;
        let mut stored_pledge = pending.stored_pledge;
        self.emitter.unpledge_many(pending.superseded).await;
        // A save that marked its message delivered found a recipient socket on this node.
        let mut connected = if stored.is_some() {
            Some(true)
        } else {
            was_connected
        };
        let covered = |seq: u64| stored.as_ref().is_some_and(|s| s.seq >= seq);
        let mut best = pending.certain.filter(|c| !covered(c.seq));
        if let Some(live) = pending.live
            && !covered(live.seq)
            && best.as_ref().is_none_or(|c| c.seq < live.seq)
        {
            let now = self
                .recipient_connected(side, &pending.participants, &pending.staff)
                .await;
            connected = Some(now.is_some());
            if let Some(to) = now {
                best = Some(DeliveryMark { to, ..live });
            }
        }
        // What moved the mark, to announce: this window's write (its webhook written ahead of
        // it), else what the saves wrote.
        let (announce, pledged) = match best {
            None => (stored, stored_pledge.take()),
            Some(mark) => {
                let moved = match self.pledge_delivered(chat, side, &mark).await {
                    Ok(pledged) => {
                        let moved = self.store.advance_delivered(chat, side, mark.seq).await;
                        self.emitter
                            .saved(moved, &pledged)
                            .await
                            .map(|m| (m, pledged))
                    }
                    Err(e) => Err(e),
                };
                match moved {
                    Ok((true, pledged)) => (Some(mark), pledged),
                    Ok((false, pledged)) => {
                        self.emitter.unpledge(pledged).await;
                        (stored, stored_pledge.take())
                    }
                    // The status stays `sent`; the recipient's next fetch delivers it.
                    Err(e) => {
                        tracing::warn!(chat = %chat, error = %e.message, "delivery not recorded");
                        (stored, stored_pledge.take())
                    }
                }
            }
        };
        // A stored mark this window's write went past: its own event is not announced.
        self.emitter.unpledge(stored_pledge).await;
        if let Some(mark) = announce {
            let payload = delivered_event(chat, &mark);
            self.emitter
                .emit_pledged(
                    rooms::chat(&pending.participants),
                    Vec::new(),
                    &payload,
                    pledged.as_ref(),
                    turn,
                )
                .await;
        }
        connected
    }

    /// The `message.delivered` of moving `side`'s mark to `mark`, written ahead of the write
    /// (`webhooks/pledges.rs`).
    async fn pledge_delivered(
        &self,
        chat: &ChatId,
        side: Side,
        mark: &DeliveryMark,
    ) -> Result<Option<crate::webhooks::Pledged>, AppError> {
        let check = crate::webhooks::Check::Delivered {
            chat: chat.as_str().to_owned(),
            side: side.as_str().to_owned(),
            data: serde_json::to_string(&delivered_event(chat, mark)).unwrap_or_default(),
        };
        let key = format!("chat:{}", chat.as_str());
        let id = crate::webhooks::fresh_id();
        self.emitter
            .pledge("message.delivered", id, key, mark.seq, check)
            .await
    }

    /// A connected recipient of `side`, if there is one: the chat's user (its first
    /// participant) in presence; for staff, a staff participant with a socket on this node,
    /// else one in presence; with no staff participant, a staff socket on this node, else any
    /// staff member in presence (wherever their socket is, it is in `admins` and got the
    /// broadcast).
    async fn recipient_connected(
        &self,
        side: Side,
        participants: &[String],
        staff: &[String],
    ) -> Option<String> {
        let candidates: &[String] = match side {
            Side::User => std::slice::from_ref(participants.first()?),
            Side::Staff if staff.is_empty() => {
                if let Some(here) = self.sockets.user_in_room(rooms::ADMINS) {
                    return Some(here);
                }
                return match self.presence.staff_online().await {
                    Ok(found) => found,
                    Err(e) => {
                        tracing::debug!(error = %e, "staff presence unavailable; delivery left to a fetch");
                        None
                    }
                };
            }
            Side::Staff => {
                if let Some(here) = staff.iter().find(|s| self.user_limits.has_socket_here(s)) {
                    return Some(here.clone());
                }
                staff
            }
        };
        for p in candidates {
            if matches!(self.presence.status(p).await, Ok(s) if s.sockets > 0) {
                return Some(p.clone());
            }
        }
        None
    }
}

/// `message:delivered` of a mark.
fn delivered_event<'a>(chat: &'a ChatId, mark: &'a DeliveryMark) -> MessageDelivered<'a> {
    MessageDelivered {
        chat_id: chat,
        message_id: &mark.message_id,
        seq: mark.seq,
        delivered_to: &mark.to,
        delivered_at: mark.at,
    }
}
