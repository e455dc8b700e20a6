//! Chats and their messages: open, list, read, update a chat; send, read and page through
//! its messages; typing indicators. Each use case authorizes its caller.

use serde::Deserialize;

use crate::auth::Keys;
use crate::cluster::rooms;
use crate::config::Config;
use crate::domain::{
    Actor, AuthUser, Chat, ChatCursor, ChatId, ChatPatch, ChatQuery, ChatStatus, ChatSummary,
    HistoryPage, MAX_CHAT_TITLE_LEN, Message, MessageId, NewChat, NewMessage, Priority, Saved,
    SendMessage, SendMessageInput, Side, Timestamp, check_len, now, parse_plain_id,
};
use crate::error::{AppError, ErrorCode};
use crate::metrics::Metrics;
use crate::ordering::Turn;
use crate::service::chat_access::chat_for;
use crate::service::delivery::Deliveries;
use crate::service::desk::assignment::AssignmentHook;
use crate::service::desk::chat_events::ChatEvents;
use crate::service::desk::patch_gate::PatchGate;
use crate::service::emit::Emitter;
use crate::service::events::{MessageNew, MessageRead, TypingEvent};
use crate::service::unknown_saves::landed;
use crate::state::{AppState, TypingTracker};
use crate::store::Store;
use crate::webhooks::{Check, fresh_id};

/// `POST /api/chats`: what a client asks for when it opens a chat.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OpenChat {
    /// At most 200 characters after trimming (so no `maxLength`: surrounding whitespace is
    /// not counted; schemathesis found the schema stricter than the rule).
    pub title: Option<String>,
    #[schema(value_type = Option<crate::domain::Priority>)]
    pub priority: Option<String>,
    /// Staff only (required for staff): the user to open the chat with.
    #[schema(max_length = 64)]
    pub participant_id: Option<String>,
}

/// `PATCH /api/chats/{chatId}`: the fields staff may change.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChatChanges {
    #[schema(value_type = Option<ChatStatus>)]
    pub status: Option<String>,
    #[schema(value_type = Option<Priority>)]
    pub priority: Option<String>,
    /// A staff member's id; they become a participant.
    #[schema(max_length = 64)]
    pub assigned_admin: Option<String>,
}

/// One page of a chat list, and the cursor of the next (`None` on the last page).
pub struct ChatPage {
    pub chats: Vec<ChatSummary>,
    pub next: Option<ChatCursor>,
}

/// The chat use cases: what they borrow of the node, and nothing else.
#[derive(Clone, Copy)]
pub struct Chats<'a> {
    /// Chats and messages.
    store: &'a dyn Store,
    /// Which file URLs this deployment issued (a `file` message may carry one).
    keys: &'a Keys,
    /// The assignment mode (a user's chat is queued in `auto`) and the page byte budget.
    config: &'a Config,
    /// Messages saved and emitted.
    metrics: &'a Metrics,
    /// The node's active typing indicators.
    typing: &'a TypingTracker,
    /// `message:new`, `message:read`, `user:typing`.
    emitter: Emitter<'a>,
    /// Called once a message went out or was fetched.
    deliveries: Deliveries<'a>,
    /// `chat:created`, `chat:updated` and their audit entries.
    events: ChatEvents<'a>,
    /// Tells the assigner about queued chats and changed assignments.
    assignment: AssignmentHook<'a>,
    /// Orders a `PATCH` that may raise a load with the assignment passes.
    gate: PatchGate<'a>,
}

impl<'a> Chats<'a> {
    /// The node's chat use cases.
    pub fn of(node: &'a AppState) -> Self {
        Chats {
            store: &*node.store,
            keys: &node.keys,
            config: &node.config,
            metrics: &node.metrics,
            typing: &node.typing,
            emitter: Emitter::of(node),
            deliveries: Deliveries::of(node),
            events: ChatEvents::of(node),
            assignment: AssignmentHook::of(node),
            gate: PatchGate::of(node),
        }
    }

    /// Loads a chat the caller may see (see [`chat_for`]).
    pub async fn chat_for(&self, user: &AuthUser, id: &ChatId) -> Result<Chat, AppError> {
        chat_for(self.store, user, id).await
    }

    /// Opens a chat. A user opens one for themself only; staff open one with
    /// `participantId` and are its assigned admin.
    pub async fn open_chat(&self, user: &AuthUser, input: OpenChat) -> Result<Chat, AppError> {
        let title = input
            .title
            .map(|t| t.trim().to_owned())
            .unwrap_or_else(|| "Support chat".into());
        check_len("title", &title, 1, MAX_CHAT_TITLE_LEN)?;
        let priority = input
            .priority
            .as_deref()
            .map(Priority::parse)
            .transpose()?
            .unwrap_or(Priority::Medium);
        let chat = if user.is_staff() {
            let participant = input
                .participant_id
                .ok_or_else(|| AppError::validation("staff open a chat with { participantId }"))?;
            let participant = parse_plain_id("participantId", &participant)?;
            let mut participants = vec![participant];
            if participants[0] != user.id {
                participants.push(user.id.clone());
            }
            NewChat {
                id: ChatId::generate(),
                participants,
                title,
                priority,
                assigned_admin: Some(user.id.clone()),
                queued: false,
            }
        } else {
            if input.participant_id.is_some_and(|p| p != user.id) {
                return Err(AppError::forbidden("a user opens chats for themself only"));
            }
            NewChat {
                id: ChatId::generate(),
                participants: vec![user.id.clone()],
                title,
                priority,
                assigned_admin: None,
                queued: self.config.assignment.is_auto(),
            }
        };
        let check = Check::ChatCreated {
            chat: chat.id.as_str().to_owned(),
        };
        let key = format!("chat:{}", chat.id.as_str());
        let pledged = self
            .emitter
            .pledge("chat.created", fresh_id(), key, 0, check)
            .await?;
        let chat = self
            .emitter
            .saved(self.store.create_chat(chat).await, &pledged)
            .await?;
        self.events
            .announce_chat_created(&chat, pledged.as_ref())
            .await;
        if chat.queued_at.is_some() {
            self.assignment.wake();
        }
        Ok(chat)
    }

    /// The chats the caller may see (a user: their own; staff: all), most recently updated
    /// first, `limit` at a time after `after`; with `ascending`, oldest change first (the
    /// chat list's catch-up, `updatedAfter`).
    pub async fn list_chats(
        &self,
        user: &AuthUser,
        status: Option<ChatStatus>,
        after: Option<ChatCursor>,
        ascending: bool,
        limit: usize,
    ) -> Result<ChatPage, AppError> {
        let query = ChatQuery {
            participant: (!user.is_staff()).then(|| user.id.clone()),
            status,
            limit: limit + 1,
            after,
            ascending,
            reader: user.id.clone(),
        };
        let mut chats = self.store.list_chats(&query).await?;
        let next = if chats.len() > limit {
            chats.truncate(limit);
            chats.last().map(|c| ChatCursor {
                updated_at: c.chat.updated_at,
                id: c.chat.id.clone(),
            })
        } else {
            None
        };
        Ok(ChatPage { chats, next })
    }

    /// Changes a chat's status, priority or assigned admin (staff only).
    pub async fn update_chat(
        &self,
        user: &AuthUser,
        id: &str,
        changes: ChatChanges,
    ) -> Result<Chat, AppError> {
        if !user.is_staff() {
            return Err(AppError::forbidden("only staff change a chat"));
        }
        let id = ChatId::parse(id)?;
        let patch = ChatPatch {
            status: changes
                .status
                .as_deref()
                .map(ChatStatus::parse)
                .transpose()?,
            priority: changes
                .priority
                .as_deref()
                .map(Priority::parse)
                .transpose()?,
            assigned_admin: changes
                .assigned_admin
                .map(|a| parse_plain_id("assignedAdmin", &a))
                .transpose()?,
            change: None,
            queue: false,
        };
        // Read first: `chat:updated` names what changed and reaches who left the chat too.
        let before = self
            .store
            .chat(&id)
            .await?
            .ok_or_else(|| AppError::not_found("chat not found"))?;
        let changed = crate::service::desk::chat_events::patched_fields(&before, &patch);
        let pledged = self.events.pledge_updated(&id, &changed, &user.id).await?;
        // A closed chat reopened with nobody assigned waits in the queue again.
        let queue = self.config.assignment.is_auto()
            && before.status == ChatStatus::Closed
            && patch.status == Some(ChatStatus::Open);
        let patch = ChatPatch {
            change: pledged.as_ref().map(|p| p.id.clone()),
            queue,
            ..patch
        };
        let held = match self.gate.enter(&patch).await {
            Ok(held) => held,
            Err(e) => {
                self.emitter.unpledge(pledged).await;
                return Err(e);
            }
        };
        let saved = self.store.update_chat(&id, patch).await;
        self.gate.leave(held).await;
        let after = self.emitter.saved(saved, &pledged).await?;
        self.events
            .announce_chat_updated(&before, &after, &Actor::of(user), pledged)
            .await;
        self.assignment.changed(&before, &after, &user.id);
        Ok(after)
    }

    /// Validates, saves, then emits `message:new` to the chat's participants and `admins`.
    /// A `clientMessageId` retry returns the first save and emits nothing.
    pub async fn send_message(
        &self,
        user: &AuthUser,
        input: SendMessageInput,
        turn: Turn,
    ) -> Result<Saved<Message>, AppError> {
        let send = SendMessage::parse(input, |url| self.keys.files.issued(url))?;
        let chat = self.chat_for(user, &send.chat_id).await?;
        let (mut new, mut here) = self.draft(user, &chat, send);
        let id = new.id.clone();
        // A save that moves the delivery mark itself: its `message.delivered` written ahead.
        let mut pledged = None;
        if let Some(to) = &here {
            match self.emitter.pledge_saved_delivered(&chat.id, &id, to).await {
                Ok(p) => pledged = p,
                Err(_) => (new.delivered, here) = (false, None),
            }
        }
        let saved = match self.save(new, &turn).await {
            Ok(saved) => saved,
            // A store timeout may still land: settled before the answer (`unknown_saves.rs`).
            Err(e) if e.code == ErrorCode::Unavailable => {
                match landed(self.store, &chat.id, &id).await {
                    Some(message) => {
                        self.metrics.messages_saved.inc();
                        Saved::Created(message)
                    }
                    None => return Err(e),
                }
            }
            Err(e) => {
                self.emitter.unpledge(pledged).await;
                return Err(e);
            }
        };
        match &saved {
            Saved::Created(message) => self.announce_new(&chat, message, here, pledged, turn).await,
            Saved::Existing(_) => self.emitter.unpledge(pledged).await,
        }
        Ok(saved)
    }

    /// The message to save, and the recipient with a socket on this node if there is one: the
    /// broadcast that follows the save reaches that socket here, so the save marks the message
    /// delivered itself, with no write of its own (`docs/delivery.md`).
    fn draft(
        &self,
        user: &AuthUser,
        chat: &Chat,
        send: SendMessage,
    ) -> (NewMessage, Option<String>) {
        let mut new = NewMessage {
            id: MessageId::generate(),
            chat_id: chat.id.clone(),
            sender: user.clone(),
            body: send.body,
            client_message_id: send.client_message_id,
            delivered: false,
        };
        let here = self.deliveries.recipient_here(new.recipient_side(), chat);
        new.delivered = here.is_some();
        (new, here)
    }

    /// Saves in the sender's save turn: in a socket event, the sender's next event may start
    /// (and read its chat) while this one saves; saves keep the sender's order.
    async fn save(&self, new: NewMessage, turn: &Turn) -> Result<Saved<Message>, AppError> {
        turn.save().await;
        let saved = self.store.save_message(new).await?;
        if matches!(saved, Saved::Created(_)) {
            self.metrics.messages_saved.inc();
        }
        Ok(saved)
    }

    /// Emits `message:new` for a message just saved; once it went out, delivery takes over
    /// (`here`: the save already marked it delivered).
    async fn announce_new(
        &self,
        chat: &Chat,
        message: &Message,
        here: Option<String>,
        pledged: Option<crate::webhooks::Pledged>,
        turn: Turn,
    ) {
        let payload = MessageNew {
            chat_id: &message.chat_id,
            message,
        };
        if self
            .emitter
            .emit(rooms::chat(&chat.participants), Vec::new(), &payload, turn)
            .await
        {
            self.metrics.messages_emitted.inc();
            self.deliveries
                .note_live_delivery(chat, message, here, pledged);
        }
    }

    /// Starts or stops a typing indicator (see [`crate::state::TypingTracker`]).
    pub async fn typing(
        &self,
        user: &AuthUser,
        chat_id: &ChatId,
        is_typing: bool,
        turn: Turn,
    ) -> Result<(), AppError> {
        let chat = self.chat_for(user, chat_id).await?;
        let changed = if is_typing {
            self.typing.start(&chat, user)
        } else {
            self.typing.stop(&chat.id, &user.id)
        };
        if changed {
            self.emit_typing(
                rooms::chat(&chat.participants),
                &chat.id,
                &user.id,
                &user.name,
                is_typing,
                turn,
            )
            .await;
        }
        Ok(())
    }

    /// Emits `user:typing` to `rooms` but the user's own sockets.
    pub async fn emit_typing(
        &self,
        rooms: Vec<String>,
        chat: &ChatId,
        user_id: &str,
        user_name: &str,
        is_typing: bool,
        turn: Turn,
    ) {
        let payload = TypingEvent {
            chat_id: chat,
            user_id,
            user_name,
            is_typing,
        };
        self.emitter
            .emit(rooms, vec![rooms::user(user_id)], &payload, turn)
            .await;
    }

    /// Marks messages up to `message_id` read for `user` (and delivered to their side first:
    /// read implies delivered), then emits `message:read` (also when nothing changed).
    pub async fn mark_read(
        &self,
        user: &AuthUser,
        chat_id: &ChatId,
        message_id: &MessageId,
        turn: Turn,
    ) -> Result<Timestamp, AppError> {
        let chat = self.chat_for(user, chat_id).await?;
        let message = self
            .store
            .message(&chat.id, message_id)
            .await?
            .ok_or_else(|| AppError::not_found("message not found"))?;
        let read_at = now();
        self.deliveries
            .deliver_with_read(&chat.id, Side::of(user.role), message.seq)
            .await?;
        let payload = MessageRead {
            chat_id: &chat.id,
            message_id,
            seq: message.seq,
            read_by: &user.id,
            read_at,
        };
        let check = Check::Read {
            chat: chat.id.as_str().to_owned(),
            message: message_id.as_str().to_owned(),
            reader: user.id.clone(),
            data: serde_json::to_string(&payload).unwrap_or_default(),
        };
        let key = format!("chat:{}", chat.id.as_str());
        let pledged = self
            .emitter
            .pledge("message.read", fresh_id(), key, message.seq, check)
            .await?;
        let marked = self.store.mark_read(&chat.id, message.seq, &user.id).await;
        self.emitter.saved(marked, &pledged).await?;
        self.emitter
            .emit_pledged(
                rooms::chat(&chat.participants),
                Vec::new(),
                &payload,
                pledged.as_ref(),
                turn,
            )
            .await;
        Ok(read_at)
    }

    /// A page of history the caller may read, each message's `status` computed from the chat's
    /// delivery marks; returns the messages and whether there are more. Returning them delivers
    /// the other side's messages to the caller's side (`service/delivery.rs`).
    pub async fn history(
        &self,
        user: &AuthUser,
        chat_id: &ChatId,
        page: HistoryPage,
        limit: usize,
        turn: Turn,
    ) -> Result<(Vec<Message>, bool), AppError> {
        let chat = self.chat_for(user, chat_id).await?;
        let mut messages = self.store.messages(&chat.id, page, limit + 1).await?;
        let mut has_more = messages.len() > limit;
        messages.truncate(limit);
        for m in &mut messages {
            m.apply_delivery(&chat.delivered);
        }
        let fit = crate::paging::within_bytes(&messages, self.config.page_max_bytes);
        if fit < messages.len() {
            messages.truncate(fit);
            has_more = true;
        }
        self.deliveries
            .deliver_fetched(user, &chat, &messages, turn)
            .await;
        Ok((messages, has_more))
    }
}
