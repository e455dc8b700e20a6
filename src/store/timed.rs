//! [`TimedStore`]: the [`Store`] the use cases see. Each operation is timed and its failure
//! counted under its own [`StoreOp`], by the decorator, so no caller pairs an operation with
//! its label by hand (there were 21 such pairings).
//!
//! What is done with a timing is the [`StoreObserver`]'s business (`state` gives it the store
//! metrics and the readiness mark), so `store` imports neither metrics nor state.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::{
    AgentLoad, Assign, AssignmentStore, AuditStore, DeskStore, FileReader, FileStream, Store,
    StoreOp, StoreResult,
};
use crate::domain::{
    AuditEntry, AuditQuery, AuthUser, Chat, ChatId, ChatPatch, ChatQuery, ChatSummary, FileId,
    FileMeta, HistoryPage, KnownUser, Message, MessageId, NewChat, NewMessage, NewReport, Removal,
    RemovalChange, Report, ReportId, ReportQuery, Saved, Side, Timestamp,
};

/// Told of every timed store operation.
pub trait StoreObserver: Send + Sync + 'static {
    /// `op` took `elapsed` and succeeded (`ok`) or failed.
    fn observe(&self, op: StoreOp, elapsed: Duration, ok: bool);
}

/// A [`Store`] whose every operation (but `ping`) is timed under its [`StoreOp`].
pub struct TimedStore {
    /// The store that does the work.
    inner: Arc<dyn Store>,
    /// Who hears of each operation.
    observer: Box<dyn StoreObserver>,
}

impl TimedStore {
    pub fn new(inner: Arc<dyn Store>, observer: impl StoreObserver) -> Self {
        Self {
            inner,
            observer: Box::new(observer),
        }
    }

    async fn time<T>(
        &self,
        op: StoreOp,
        f: impl Future<Output = StoreResult<T>>,
    ) -> StoreResult<T> {
        let started = Instant::now();
        let result = f.await;
        self.observer.observe(op, started.elapsed(), result.is_ok());
        result
    }
}

#[async_trait]
impl Store for TimedStore {
    /// Not timed: the readiness probe (`http/health.rs`) judges it by its own deadline.
    async fn ping(&self) -> StoreResult<()> {
        self.inner.ping().await
    }

    async fn create_chat(&self, chat: NewChat) -> StoreResult<Chat> {
        self.time(StoreOp::CreateChat, self.inner.create_chat(chat))
            .await
    }
    async fn chat(&self, id: &ChatId) -> StoreResult<Option<Chat>> {
        self.time(StoreOp::Chat, self.inner.chat(id)).await
    }
    async fn list_chats(&self, query: &ChatQuery) -> StoreResult<Vec<ChatSummary>> {
        self.time(StoreOp::ListChats, self.inner.list_chats(query))
            .await
    }
    async fn update_chat(&self, id: &ChatId, patch: ChatPatch) -> StoreResult<Chat> {
        self.time(StoreOp::UpdateChat, self.inner.update_chat(id, patch))
            .await
    }
    async fn chat_partners(&self, user_id: &str) -> StoreResult<Vec<String>> {
        self.time(StoreOp::ChatPartners, self.inner.chat_partners(user_id))
            .await
    }
    /// One operation under `chat_partners`'s label, however many users (as before).
    async fn chat_partners_of(
        &self,
        user_ids: &[String],
    ) -> StoreResult<Vec<(String, Vec<String>)>> {
        self.time(StoreOp::ChatPartners, self.inner.chat_partners_of(user_ids))
            .await
    }
    async fn save_message(&self, message: NewMessage) -> StoreResult<Saved<Message>> {
        self.time(StoreOp::SaveMessage, self.inner.save_message(message))
            .await
    }
    async fn message(&self, chat: &ChatId, id: &MessageId) -> StoreResult<Option<Message>> {
        self.time(StoreOp::Message, self.inner.message(chat, id))
            .await
    }
    async fn messages(
        &self,
        chat: &ChatId,
        page: HistoryPage,
        limit: usize,
    ) -> StoreResult<Vec<Message>> {
        self.time(StoreOp::Messages, self.inner.messages(chat, page, limit))
            .await
    }
    async fn mark_read(&self, chat: &ChatId, up_to_seq: u64, reader: &str) -> StoreResult<u64> {
        self.time(
            StoreOp::MarkRead,
            self.inner.mark_read(chat, up_to_seq, reader),
        )
        .await
    }
    async fn advance_delivered(
        &self,
        chat: &ChatId,
        side: Side,
        up_to_seq: u64,
    ) -> StoreResult<bool> {
        self.time(
            StoreOp::AdvanceDelivered,
            self.inner.advance_delivered(chat, side, up_to_seq),
        )
        .await
    }
    async fn create_report(&self, report: NewReport) -> StoreResult<Report> {
        self.time(StoreOp::CreateReport, self.inner.create_report(report))
            .await
    }
    async fn report(&self, id: &ReportId) -> StoreResult<Option<Report>> {
        self.time(StoreOp::Report, self.inner.report(id)).await
    }
    async fn list_reports(&self, query: &ReportQuery) -> StoreResult<Vec<Report>> {
        self.time(StoreOp::ListReports, self.inner.list_reports(query))
            .await
    }
    async fn mark_report_read(&self, id: &ReportId, at: Timestamp) -> StoreResult<Report> {
        self.time(StoreOp::MarkReportRead, self.inner.mark_report_read(id, at))
            .await
    }
    async fn unread_report_count(&self, user_id: &str) -> StoreResult<u64> {
        self.time(
            StoreOp::UnreadReportCount,
            self.inner.unread_report_count(user_id),
        )
        .await
    }
    async fn save_upload(&self, meta: FileMeta, data: FileReader) -> StoreResult<()> {
        self.time(StoreOp::SaveUpload, self.inner.save_upload(meta, data))
            .await
    }
    async fn upload(&self, id: &FileId) -> StoreResult<Option<(FileMeta, FileStream)>> {
        self.time(StoreOp::Upload, self.inner.upload(id)).await
    }
    async fn uploaded_bytes_since(&self, user_id: &str, since: Timestamp) -> StoreResult<u64> {
        self.time(
            StoreOp::UploadedBytesSince,
            self.inner.uploaded_bytes_since(user_id, since),
        )
        .await
    }
    async fn file_shared_with(&self, user_id: &str, file_urls: &[String]) -> StoreResult<bool> {
        self.time(
            StoreOp::FileSharedWith,
            self.inner.file_shared_with(user_id, file_urls),
        )
        .await
    }
}

#[async_trait]
impl DeskStore for TimedStore {
    async fn removal(&self, user_id: &str) -> StoreResult<Option<Removal>> {
        self.time(StoreOp::Removal, self.inner.removal(user_id))
            .await
    }
    async fn change_removal(
        &self,
        user_id: &str,
        change: RemovalChange,
    ) -> StoreResult<Option<Removal>> {
        self.time(
            StoreOp::ChangeRemoval,
            self.inner.change_removal(user_id, change),
        )
        .await
    }
    async fn see_users(&self, users: &[AuthUser], at: Timestamp) -> StoreResult<()> {
        self.time(StoreOp::SeeUsers, self.inner.see_users(users, at))
            .await
    }
    async fn known_user(&self, user_id: &str) -> StoreResult<Option<KnownUser>> {
        self.time(StoreOp::KnownUser, self.inner.known_user(user_id))
            .await
    }
}

#[async_trait]
impl AuditStore for TimedStore {
    async fn record_audit(&self, entry: &AuditEntry) -> StoreResult<()> {
        self.time(StoreOp::RecordAudit, self.inner.record_audit(entry))
            .await
    }
    async fn audit_entries(&self, query: &AuditQuery) -> StoreResult<Vec<AuditEntry>> {
        self.time(StoreOp::AuditEntries, self.inner.audit_entries(query))
            .await
    }
    async fn trim_audit(&self, before: Timestamp) -> StoreResult<u64> {
        self.time(StoreOp::TrimAudit, self.inner.trim_audit(before))
            .await
    }
}

#[async_trait]
impl AssignmentStore for TimedStore {
    async fn queued_chats(&self, limit: usize) -> StoreResult<Vec<Chat>> {
        self.time(StoreOp::QueuedChats, self.inner.queued_chats(limit))
            .await
    }
    async fn agent_loads(&self, agents: &[String]) -> StoreResult<Vec<AgentLoad>> {
        self.time(StoreOp::AgentLoads, self.inner.agent_loads(agents))
            .await
    }
    async fn assignees(&self) -> StoreResult<Vec<String>> {
        self.time(StoreOp::Assignees, self.inner.assignees()).await
    }
    async fn open_chats_of(&self, agent: &str) -> StoreResult<Vec<Chat>> {
        self.time(StoreOp::OpenChatsOf, self.inner.open_chats_of(agent))
            .await
    }
    async fn assign_queued(&self, a: Assign<'_>) -> StoreResult<Option<Chat>> {
        self.time(StoreOp::AssignQueued, self.inner.assign_queued(a))
            .await
    }
    async fn requeue(
        &self,
        chat: &ChatId,
        agent: &str,
        queued_at: Timestamp,
        change: Option<&str>,
        fence: u64,
    ) -> StoreResult<Option<Chat>> {
        self.time(
            StoreOp::Requeue,
            self.inner.requeue(chat, agent, queued_at, change, fence),
        )
        .await
    }
    async fn fence_queue(&self, fence: u64) -> StoreResult<()> {
        self.time(StoreOp::FenceQueue, self.inner.fence_queue(fence))
            .await
    }
    async fn chat_has_change(&self, id: &ChatId, change: &str) -> StoreResult<bool> {
        self.time(
            StoreOp::ChatHasChange,
            self.inner.chat_has_change(id, change),
        )
        .await
    }
}
