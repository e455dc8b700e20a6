//! The persistence seam: chats, messages with their per-chat `seq`, read receipts, delivery
//! marks, reports and uploads.
//!
//! Only domain types cross the [`Store`] trait. Two implementations exist: [`EmbeddedStore`]
//! (SQLite in `DATA_DIR`, the single-node default) and [`MongoStore`] (MongoDB, shared by every
//! node of a cluster; `docs/mongodb.md`).
//! Both pass the same contract tests (`tests/integration/store_contract.rs`).

use async_trait::async_trait;
use bytes::Bytes;

use crate::domain::{
    Chat, ChatId, ChatPatch, ChatQuery, ChatSummary, FileId, FileMeta, HistoryPage, Message,
    MessageId, NewChat, NewMessage, NewReport, Report, ReportId, ReportQuery, Saved, Side,
    Timestamp,
};
use crate::error::{AppError, ErrorCode};

pub mod assignment;
pub mod audit;
pub mod desk;
pub mod embedded;
pub mod mongo;
pub mod timed;

pub use assignment::{AgentLoad, Assign, AssignmentStore};
pub use audit::AuditStore;
pub use desk::DeskStore;

pub use embedded::EmbeddedStore;
pub use mongo::{MongoSettings, MongoStore};
pub use timed::{StoreObserver, TimedStore};

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The thing named does not exist.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The backing database cannot be reached: nothing was saved.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// Anything else: a bug or corrupt data.
    #[error("store failure: {0}")]
    Internal(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// What a client is told when a store operation fails: `NOT_FOUND`, or `UNAVAILABLE` /
/// `INTERNAL` with a safe message while the cause goes to the logs.
impl From<StoreError> for AppError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => AppError::not_found(format!("{what} not found")),
            StoreError::Unavailable(cause) => {
                tracing::warn!(error = %cause, "store unavailable");
                AppError::new(
                    ErrorCode::Unavailable,
                    "the store is unavailable: nothing was saved",
                )
            }
            StoreError::Internal(cause) => {
                tracing::error!(error = %cause, "store failure");
                AppError::new(ErrorCode::Internal, "internal error")
            }
        }
    }
}

/// Writes [`StoreOp`] and its label names from one list.
macro_rules! store_operations {
    ($($op:ident => $name:literal,)*) => {
        /// A [`Store`] operation, one per trait method: what [`TimedStore`] times and counts
        /// ([`crate::metrics::Metrics::store_operation`]). A new method gets a new entry here,
        /// and with it its own `operation` label; `TimedStore` does not build until it times it.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum StoreOp {
            $($op,)*
        }

        impl StoreOp {
            /// Every operation, in list order (`op as usize` indexes it).
            pub const ALL: &[StoreOp] = &[$(Self::$op,)*];

            /// The `operation` label: the [`Store`] method's name.
            pub const fn name(self) -> &'static str {
                match self {
                    $(Self::$op => $name,)*
                }
            }
        }
    };
}

store_operations! {
    Ping => "ping",
    CreateChat => "create_chat",
    Chat => "chat",
    ListChats => "list_chats",
    UpdateChat => "update_chat",
    ChatHasChange => "chat_has_change",
    ChatPartners => "chat_partners",
    SaveMessage => "save_message",
    Message => "message",
    Messages => "messages",
    MarkRead => "mark_read",
    AdvanceDelivered => "advance_delivered",
    CreateReport => "create_report",
    Report => "report",
    ListReports => "list_reports",
    MarkReportRead => "mark_report_read",
    UnreadReportCount => "unread_report_count",
    SaveUpload => "save_upload",
    Upload => "upload",
    UploadedBytesSince => "uploaded_bytes_since",
    FileSharedWith => "file_shared_with",
    Removal => "removal",
    ChangeRemoval => "change_removal",
    SeeUsers => "see_users",
    KnownUser => "known_user",
    RecordAudit => "record_audit",
    AuditEntries => "audit_entries",
    TrimAudit => "trim_audit",
    QueuedChats => "queued_chats",
    AgentLoads => "agent_loads",
    Assignees => "assignees",
    OpenChatsOf => "open_chats_of",
    AssignQueued => "assign_queued",
    Requeue => "requeue",
    FenceQueue => "fence_queue",
}

/// An upload's bytes as the store reads them in (from the file the request was received into).
pub type FileReader = Box<dyn tokio::io::AsyncRead + Send + Unpin>;

/// A kept file's bytes, in slices of at most [`FILE_SLICE`], read as they are sent.
pub type FileStream = futures_util::stream::BoxStream<'static, std::io::Result<Bytes>>;

/// The most of one file a read or write holds at a time.
pub const FILE_SLICE: usize = 64 * 1024;

/// Reads `reader` into a [`FileStream`] of at most [`FILE_SLICE`] bytes a slice.
pub fn stream_reader(reader: impl tokio::io::AsyncRead + Send + Unpin + 'static) -> FileStream {
    use tokio::io::AsyncReadExt;
    Box::pin(futures_util::stream::try_unfold(
        reader,
        |mut reader| async move {
            let mut buf = bytes::BytesMut::with_capacity(FILE_SLICE);
            let n = reader.read_buf(&mut buf).await?;
            Ok((n > 0).then(|| (buf.freeze(), reader)))
        },
    ))
}

/// A whole [`FileStream`] in memory (for tests and small files).
pub async fn read_to_end(mut stream: FileStream) -> std::io::Result<Bytes> {
    use futures_util::StreamExt;
    let mut all = bytes::BytesMut::new();
    while let Some(slice) = stream.next().await {
        all.extend_from_slice(&slice?);
    }
    Ok(all.freeze())
}

/// Where chats, messages, reports and uploads live.
#[async_trait]
pub trait Store: DeskStore + AuditStore + AssignmentStore + Send + Sync + 'static {
    /// Answers when the backing database is reachable (for `/readyz`).
    async fn ping(&self) -> StoreResult<()>;

    /// Creates a chat with `seq` 0.
    async fn create_chat(&self, chat: NewChat) -> StoreResult<Chat>;
    async fn chat(&self, id: &ChatId) -> StoreResult<Option<Chat>>;
    /// Chats newest-updated first, at most `query.limit`, with the reader's unread counts.
    async fn list_chats(&self, query: &ChatQuery) -> StoreResult<Vec<ChatSummary>>;
    /// Applies a patch; an `assigned_admin` also becomes a participant.
    async fn update_chat(&self, id: &ChatId, patch: ChatPatch) -> StoreResult<Chat>;
    /// Everyone who shares an open chat with `user_id` (without `user_id` itself).
    async fn chat_partners(&self, user_id: &str) -> StoreResult<Vec<String>>;
    /// [`Store::chat_partners`] of several users at once, in one read where the backend can
    /// (a storm of departures announces them with a few reads, not one per user). Every user
    /// asked for is in the answer, with no partners if it has none.
    async fn chat_partners_of(
        &self,
        user_ids: &[String],
    ) -> StoreResult<Vec<(String, Vec<String>)>> {
        let mut out = Vec::with_capacity(user_ids.len());
        for u in user_ids {
            out.push((u.clone(), self.chat_partners(u).await?));
        }
        Ok(out)
    }

    /// Saves a message with the chat's next `seq`, or, when `(sender, clientMessageId)` was
    /// saved before, returns that first save and uses up no `seq`.
    async fn save_message(&self, message: NewMessage) -> StoreResult<Saved<Message>>;
    async fn message(&self, chat: &ChatId, id: &MessageId) -> StoreResult<Option<Message>>;
    /// A page of history: `Latest` and `Before` newest first, `After` oldest first.
    async fn messages(
        &self,
        chat: &ChatId,
        page: HistoryPage,
        limit: usize,
    ) -> StoreResult<Vec<Message>>;
    /// Marks every message with `seq <= up_to_seq` not sent by `reader` as read; returns how
    /// many changed.
    async fn mark_read(&self, chat: &ChatId, up_to_seq: u64, reader: &str) -> StoreResult<u64>;
    /// Moves the delivered-up-to mark of `side` in `chat` to `up_to_seq` if it is lower, in one
    /// conditional write (two nodes at once cannot move it back); `true` when it moved. A
    /// missing chat is `NotFound`. The marks come back on [`Chat::delivered`].
    async fn advance_delivered(
        &self,
        chat: &ChatId,
        side: Side,
        up_to_seq: u64,
    ) -> StoreResult<bool>;

    async fn create_report(&self, report: NewReport) -> StoreResult<Report>;
    async fn report(&self, id: &ReportId) -> StoreResult<Option<Report>>;
    /// Reports newest first, at most `query.limit`.
    async fn list_reports(&self, query: &ReportQuery) -> StoreResult<Vec<Report>>;
    /// Marks a report read; a second call keeps the first `readAt`.
    async fn mark_report_read(&self, id: &ReportId, at: Timestamp) -> StoreResult<Report>;
    async fn unread_report_count(&self, user_id: &str) -> StoreResult<u64>;

    /// Keeps an uploaded file (at most [`crate::domain::MAX_UPLOAD_BYTES`]), copied from
    /// `data` a bounded slice at a time (never the whole file in memory): `meta.size` bytes.
    async fn save_upload(&self, meta: FileMeta, data: FileReader) -> StoreResult<()>;
    /// A kept file, its bytes read as the caller consumes them (never the whole file in memory).
    async fn upload(&self, id: &FileId) -> StoreResult<Option<(FileMeta, FileStream)>>;
    /// Bytes `user_id` has uploaded since `since` (the upload budget, `UPLOAD_BYTES_PER_DAY`).
    async fn uploaded_bytes_since(&self, user_id: &str, since: Timestamp) -> StoreResult<u64>;
    /// Does a chat `user_id` participates in hold a message whose `fileUrl` is exactly one of
    /// `file_urls` (the URLs this deployment issued for one file)? Who may open a file with a
    /// token is decided above; this only answers the question.
    async fn file_shared_with(&self, user_id: &str, file_urls: &[String]) -> StoreResult<bool>;
}
