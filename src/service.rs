//! The use cases both transports share: socket events and REST endpoints call these, so a rule
//! (who may do what, what is saved before what is sent) is written once.
//!
//! Every function here authorizes the caller, works through the [`Store`](crate::store::Store)
//! and [`Presence`](crate::presence::Presence) seams, and emits through the fan-out. A message
//! is always saved before anything is emitted or acknowledged.

use std::time::Instant;

use serde::Serialize;

use crate::app::AppState;
use crate::cluster::{Emission, rooms};
use crate::domain::{
    AuthUser, Chat, ChatId, HistoryPage, Message, MessageId, NewMessage, NewReport, Report,
    ReportId, ReportInput, Saved, SendMessage, SendMessageInput, Timestamp, now, rfc3339,
};
use crate::error::AppError;
use crate::presence::SocketEntry;
use crate::store::{StoreOp, StoreResult};

/// Server event names (PROTOCOL.md, server -> client).
pub mod events {
    pub const MESSAGE_NEW: &str = "message:new";
    pub const USER_TYPING: &str = "user:typing";
    pub const MESSAGE_READ: &str = "message:read";
    pub const USER_STATUS: &str = "user:status";
    pub const RECEIVE_REPORT: &str = "receiveReportMessage";
    pub const REPORT_SENT: &str = "reportMessageSent";
    pub const REPORT_READ: &str = "report:read";
    pub const ERROR: &str = "error";
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageNew<'a> {
    pub chat_id: &'a ChatId,
    pub message: &'a Message,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TypingEvent<'a> {
    pub chat_id: &'a ChatId,
    pub user_id: &'a str,
    pub user_name: &'a str,
    pub is_typing: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageRead<'a> {
    pub chat_id: &'a ChatId,
    pub message_id: &'a MessageId,
    pub read_by: &'a str,
    #[serde(serialize_with = "rfc3339")]
    pub read_at: Timestamp,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UserStatus<'a> {
    pub user_id: &'a str,
    pub status: &'static str,
}

#[derive(Serialize)]
pub struct ReceiveReport<'a> {
    pub success: bool,
    pub message: &'a Report,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReportRead<'a> {
    pub report_id: &'a ReportId,
    pub user_id: &'a str,
    #[serde(serialize_with = "rfc3339")]
    pub read_at: Timestamp,
}

/// What marking a report read answers (the `report:read` ack and the REST response).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReportReadReply {
    pub report_id: ReportId,
    #[serde(serialize_with = "rfc3339")]
    pub read_at: Timestamp,
}

impl From<Report> for ReportReadReply {
    fn from(report: Report) -> Self {
        Self {
            read_at: report.read_at.unwrap_or_else(now),
            report_id: report.id,
        }
    }
}

impl AppState {
    /// Emits to rooms; a failure is logged and counted, never hidden. The caller decides what a
    /// failure means (a saved message stays saved: clients catch up with `chat:sync`).
    pub async fn emit(
        &self,
        rooms: Vec<String>,
        except: Vec<String>,
        event: &'static str,
        payload: &(dyn erased_serde::Serialize + Sync),
    ) -> bool {
        // In a socket event: after the previous event's emissions, and let the next event start.
        crate::realtime::wait_for_emit_turn().await;
        let started = Instant::now();
        self.metrics.fanout_publishes.inc();
        let result = self
            .fanout
            .emit(Emission {
                rooms,
                except,
                event,
                payload,
            })
            .await;
        self.metrics
            .fanout_duration
            .observe(started.elapsed().as_secs_f64());
        match result {
            Ok(()) => true,
            Err(e) => {
                self.metrics.fanout_failures.inc();
                tracing::warn!(event, error = %e, "emission failed");
                false
            }
        }
    }

    /// Times a store call and counts its failures.
    pub async fn timed<T>(
        &self,
        operation: StoreOp,
        f: impl Future<Output = StoreResult<T>>,
    ) -> Result<T, AppError> {
        let started = Instant::now();
        let result = f.await;
        let m = self.metrics.store_operation(operation);
        m.duration.observe(started.elapsed().as_secs_f64());
        if result.is_err() {
            m.errors.inc();
        }
        Ok(result?)
    }

    /// Loads a chat the caller may see: `NOT_FOUND` if there is none, `FORBIDDEN` (saying
    /// nothing about the chat) if the caller is neither a participant nor staff.
    pub async fn chat_for(&self, user: &AuthUser, id: &ChatId) -> Result<Chat, AppError> {
        let chat = self
            .timed(StoreOp::Chat, self.store.chat(id))
            .await?
            .ok_or_else(|| AppError::not_found("chat not found"))?;
        if !chat.admits(user) {
            return Err(AppError::forbidden(
                "you are not a participant of this chat",
            ));
        }
        Ok(chat)
    }

    /// Validates, saves, then emits `message:new` to the chat's participants and `admins`.
    /// A `clientMessageId` retry returns the first save and emits nothing.
    pub async fn send_message(
        &self,
        user: &AuthUser,
        input: SendMessageInput,
    ) -> Result<Saved<Message>, AppError> {
        let SendMessage {
            chat_id,
            body,
            client_message_id,
        } = SendMessage::parse(input, |url| self.keys.files.issued(url))?;
        let chat = self.chat_for(user, &chat_id).await?;
        // In a socket event: the sender's next event may start (and read its chat) while this
        // one saves; saves keep the sender's order.
        crate::realtime::wait_for_save_turn().await;
        let saved = self
            .timed(
                StoreOp::SaveMessage,
                self.store.save_message(NewMessage {
                    chat_id: chat.id.clone(),
                    sender: user.clone(),
                    body,
                    client_message_id,
                }),
            )
            .await?;
        if let Saved::Created(message) = &saved {
            self.metrics.messages_saved.inc();
            let payload = MessageNew {
                chat_id: &message.chat_id,
                message,
            };
            if self
                .emit(chat_rooms(&chat), Vec::new(), events::MESSAGE_NEW, &payload)
                .await
            {
                self.metrics.messages_emitted.inc();
            }
        }
        Ok(saved)
    }

    /// Starts or stops a typing indicator (see [`crate::realtime::typing`]).
    pub async fn typing(
        &self,
        user: &AuthUser,
        chat_id: &ChatId,
        is_typing: bool,
    ) -> Result<(), AppError> {
        let chat = self.chat_for(user, chat_id).await?;
        let changed = if is_typing {
            self.typing.start(&chat, user)
        } else {
            self.typing.stop(&chat.id, &user.id)
        };
        if changed {
            self.emit_typing(chat_rooms(&chat), &chat.id, &user.id, &user.name, is_typing)
                .await;
        }
        Ok(())
    }

    pub async fn emit_typing(
        &self,
        rooms: Vec<String>,
        chat: &ChatId,
        user_id: &str,
        user_name: &str,
        is_typing: bool,
    ) {
        let payload = TypingEvent {
            chat_id: chat,
            user_id,
            user_name,
            is_typing,
        };
        self.emit(
            rooms,
            vec![rooms::user(user_id)],
            events::USER_TYPING,
            &payload,
        )
        .await;
    }

    /// Marks messages up to `message_id` read for `user`, then emits `message:read` (also when
    /// nothing changed).
    pub async fn mark_read(
        &self,
        user: &AuthUser,
        chat_id: &ChatId,
        message_id: &MessageId,
    ) -> Result<Timestamp, AppError> {
        let chat = self.chat_for(user, chat_id).await?;
        let message = self
            .timed(StoreOp::Message, self.store.message(&chat.id, message_id))
            .await?
            .ok_or_else(|| AppError::not_found("message not found"))?;
        let read_at = now();
        self.timed(
            StoreOp::MarkRead,
            self.store.mark_read(&chat.id, message.seq, &user.id),
        )
        .await?;
        let payload = MessageRead {
            chat_id: &chat.id,
            message_id,
            read_by: &user.id,
            read_at,
        };
        self.emit(
            chat_rooms(&chat),
            Vec::new(),
            events::MESSAGE_READ,
            &payload,
        )
        .await;
        Ok(read_at)
    }

    /// A page of history the caller may read; returns the messages and whether there are more.
    pub async fn history(
        &self,
        user: &AuthUser,
        chat_id: &ChatId,
        page: HistoryPage,
        limit: usize,
    ) -> Result<(Vec<Message>, bool), AppError> {
        let chat = self.chat_for(user, chat_id).await?;
        let mut messages = self
            .timed(
                StoreOp::Messages,
                self.store.messages(&chat.id, page, limit + 1),
            )
            .await?;
        let has_more = messages.len() > limit;
        messages.truncate(limit);
        Ok((messages, has_more))
    }

    /// Validates and saves a report (staff only), then delivers it to `user:{userId}`.
    pub async fn send_report(
        &self,
        user: &AuthUser,
        input: ReportInput,
    ) -> Result<Report, AppError> {
        if !user.is_staff() {
            return Err(AppError::forbidden("only staff send report messages"));
        }
        let report = NewReport::parse(input, user)?;
        let report = self
            .timed(StoreOp::CreateReport, self.store.create_report(report))
            .await?;
        self.metrics.reports_saved.inc();
        let payload = ReceiveReport {
            success: true,
            message: &report,
        };
        self.emit(
            vec![rooms::user(&report.user_id)],
            Vec::new(),
            events::RECEIVE_REPORT,
            &payload,
        )
        .await;
        Ok(report)
    }

    /// Marks a report read (its recipient only), then emits `report:read`.
    pub async fn read_report(&self, user: &AuthUser, id: &ReportId) -> Result<Report, AppError> {
        let report = self
            .timed(StoreOp::Report, self.store.report(id))
            .await?
            .ok_or_else(|| AppError::not_found("report not found"))?;
        if report.user_id != user.id {
            return Err(AppError::forbidden(
                "only the report's recipient marks it read",
            ));
        }
        let report = self
            .timed(
                StoreOp::MarkReportRead,
                self.store.mark_report_read(id, now()),
            )
            .await?;
        let read_at = report.read_at.unwrap_or_else(now);
        let payload = ReportRead {
            report_id: &report.id,
            user_id: &report.user_id,
            read_at,
        };
        self.emit(
            vec![rooms::user(&report.user_id), rooms::ADMINS.to_owned()],
            Vec::new(),
            events::REPORT_READ,
            &payload,
        )
        .await;
        Ok(report)
    }

    /// Registers a socket in presence; announces `online` if it is the user's first anywhere.
    pub async fn socket_online(&self, entry: &SocketEntry) {
        match self.presence.connect(entry).await {
            Ok(true) => self.announce_status(&entry.user_id, true).await,
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "presence connect failed"),
        }
    }

    /// Removes a socket from presence; announces `offline` if it was the user's last.
    pub async fn socket_offline(&self, user_id: &str, socket_id: &str) {
        match self.presence.disconnect(user_id, socket_id).await {
            Ok(true) => self.announce_status(user_id, false).await,
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "presence disconnect failed"),
        }
    }

    /// Sends `user:status` to `admins` and the participants of the user's open chats.
    pub async fn announce_status(&self, user_id: &str, online: bool) {
        if online {
            self.metrics.presence_users_online.inc();
        } else {
            self.metrics.presence_users_online.dec();
        }
        let partners = match self
            .timed(StoreOp::ChatPartners, self.store.chat_partners(user_id))
            .await
        {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e.message, "could not load chat partners; telling admins only");
                Vec::new()
            }
        };
        let mut targets: Vec<String> = partners.iter().map(|p| rooms::user(p)).collect();
        targets.push(rooms::ADMINS.to_owned());
        let payload = UserStatus {
            user_id,
            status: if online { "online" } else { "offline" },
        };
        self.emit(
            targets,
            vec![rooms::user(user_id)],
            events::USER_STATUS,
            &payload,
        )
        .await;
    }
}

/// The rooms a chat's events go to: each participant's room and `admins`.
pub fn chat_rooms(chat: &Chat) -> Vec<String> {
    let mut rooms: Vec<String> = chat.participants.iter().map(|p| rooms::user(p)).collect();
    rooms.push(rooms::ADMINS.to_owned());
    rooms
}
