//! The live chat list: `chat:created` when a chat is opened and `chat:updated` when its status,
//! priority, assigned admin or participants change, to the chat's participants (before and
//! after the change) and `admins`. Both are recoverable, like `message:new`: a console that
//! drops for a moment gets them back, and one away longer catches up with
//! `GET /api/chats?updatedAfter=`.

use serde::Serialize;

use crate::cluster::rooms;
use crate::domain::{Actor, Chat, ChatId};
use crate::error::AppError;
use crate::ordering::Turn;
use crate::service::desk::audit::Audit;
use crate::service::emit::Emitter;
use crate::service::events::ServerEvent;
use crate::state::NodeState;
use crate::webhooks::{Check, Pledged, fresh_id};

/// `chat:created`: `{ chat }`.
#[derive(Serialize)]
pub struct ChatCreated<'a> {
    pub chat: &'a Chat,
}

impl ServerEvent for ChatCreated<'_> {
    const NAME: &'static str = "chat:created";
    const RECOVERABLE: bool = true;
    fn webhook(&self) -> Option<crate::webhooks::Event> {
        Some(crate::webhooks::chat_event(
            "chat.created",
            self.chat,
            None,
            "",
        ))
    }
}

/// `chat:updated`: `{ chat, changed, by }`; `by` is the acting user's id, or `system` for
/// auto-assignment.
#[derive(Serialize)]
pub struct ChatUpdated<'a> {
    pub chat: &'a Chat,
    pub changed: Vec<&'static str>,
    pub by: &'a str,
}

impl ServerEvent for ChatUpdated<'_> {
    const NAME: &'static str = "chat:updated";
    const RECOVERABLE: bool = true;
    fn webhook(&self) -> Option<crate::webhooks::Event> {
        let changed = Some(self.changed.clone());
        Some(crate::webhooks::chat_event(
            "chat.updated",
            self.chat,
            changed,
            self.by,
        ))
    }
}

/// What `patch` would change in `before`, in the protocol's names (what a pledge written ahead
/// of its save names; `participants` goes with a new assigned admin).
pub fn patched_fields(before: &Chat, patch: &crate::domain::ChatPatch) -> Vec<&'static str> {
    let mut changed = Vec::new();
    if patch.status.is_some_and(|s| s != before.status) {
        changed.push("status");
    }
    if patch.priority.is_some_and(|p| p != before.priority) {
        changed.push("priority");
    }
    if patch
        .assigned_admin
        .as_ref()
        .is_some_and(|a| before.assigned_admin.as_ref() != Some(a))
    {
        changed.push("assignedAdmin");
        changed.push("participants");
    }
    changed
}

/// What changed from `before` to `after`, in the protocol's names.
pub fn changed_fields(before: &Chat, after: &Chat) -> Vec<&'static str> {
    let mut changed = Vec::new();
    if before.status != after.status {
        changed.push("status");
    }
    if before.priority != after.priority {
        changed.push("priority");
    }
    if before.assigned_admin != after.assigned_admin {
        changed.push("assignedAdmin");
    }
    if before.participants != after.participants {
        changed.push("participants");
    }
    changed
}

/// The live chat list's announcements, and the audit entries a change of a chat records.
#[derive(Clone, Copy)]
pub struct ChatEvents<'a> {
    /// `chat:created`, `chat:updated`.
    emitter: Emitter<'a>,
    /// Records what each `chat:updated` changed.
    audit: Audit<'a>,
}

impl<'a> ChatEvents<'a> {
    /// The node's chat list announcements.
    pub fn of(node: &'a NodeState) -> Self {
        ChatEvents {
            emitter: Emitter::of(node),
            audit: Audit::of(node),
        }
    }

    /// The `chat.updated` of a change of `chat` (`changed`, in the protocol's names) by `by`,
    /// written ahead of its save (`webhooks/pledges.rs`): `None` when nothing changes or no
    /// endpoint takes it.
    pub async fn pledge_updated(
        &self,
        chat: &ChatId,
        changed: &[&str],
        by: &str,
    ) -> Result<Option<Pledged>, AppError> {
        if changed.is_empty() {
            return Ok(None);
        }
        let check = Check::ChatUpdated {
            chat: chat.as_str().to_owned(),
            changed: changed.iter().map(|c| (*c).to_owned()).collect(),
            by: by.to_owned(),
        };
        let key = format!("chat:{}", chat.as_str());
        self.emitter
            .pledge("chat.updated", fresh_id(), key, 0, check)
            .await
    }

    /// Emits `chat:created` for a chat just opened (its webhook the one `pledged` wrote ahead).
    pub async fn announce_chat_created(&self, chat: &Chat, pledged: Option<&Pledged>) {
        self.emitter
            .emit_pledged(
                rooms::chat(&chat.participants),
                Vec::new(),
                &ChatCreated { chat },
                pledged,
                Turn::unordered(),
            )
            .await;
    }

    /// Emits `chat:updated` if anything the list shows changed (a patch that changed nothing
    /// emits nothing), to the participants before and after and `admins`, and records the
    /// change in the audit log (`audit.rs`): `by` is the staff member, or [`Actor::system`]
    /// for auto-assignment.
    /// `pledged`: the webhook written ahead of the save (forgotten if nothing changed).
    pub async fn announce_chat_updated(
        &self,
        before: &Chat,
        after: &Chat,
        by: &Actor,
        pledged: Option<Pledged>,
    ) {
        let changed = changed_fields(before, after);
        if changed.is_empty() {
            self.emitter.unpledge(pledged).await;
            return;
        }
        let mut participants = before.participants.clone();
        for p in &after.participants {
            if !participants.contains(p) {
                participants.push(p.clone());
            }
        }
        let event = ChatUpdated {
            chat: after,
            changed,
            by: &by.id,
        };
        self.emitter
            .emit_pledged(
                rooms::chat(&participants),
                Vec::new(),
                &event,
                pledged.as_ref(),
                Turn::unordered(),
            )
            .await;
        self.audit.chat_change(by, before, after).await;
    }
}
