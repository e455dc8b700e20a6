//! Uploaded files: keep one (within its uploader's daily budget), and hand one out to a signed
//! URL or to a signed-in caller who may read it (its uploader, staff, or a participant of a chat
//! that carries it).
//!
//! The budget, `UPLOAD_BYTES_PER_DAY`, counts the bytes a user has kept since the start of the
//! current UTC day, as the store holds them (so it is cluster-wide and survives restarts), plus
//! the user's uploads being saved on this node right now (`state/upload_budget.rs`). An upload
//! that would pass it is refused `RATE_LIMITED`, with a `Retry-After` up to the next UTC midnight,
//! and nothing is kept.

use chrono::{Duration as Days, Utc};

use crate::auth::Keys;
use crate::config::Config;
use crate::domain::{AuthUser, FileId, FileMeta, Timestamp, now};
use crate::error::{AppError, ErrorCode};
use crate::state::NodeState;
use crate::state::upload_budget::UploadsInFlight;
use crate::store::{FileReader, FileStream, Store};

/// A file as it was received, its name and content type already cleaned by the transport, its
/// `size` bytes readable from `data` (the file the request body was received into).
pub struct Upload {
    pub file_name: String,
    pub content_type: String,
    pub data: FileReader,
    pub size: u64,
}

/// The start of the current UTC day, and the seconds until the next.
fn budget_day(at: Timestamp) -> (Timestamp, u64) {
    let start = at
        .with_timezone(&Utc)
        .date_naive()
        .and_hms_opt(0, 0, 0)
        .map(|d| d.and_utc())
        .unwrap_or(at);
    let left = (start + Days::days(1) - at).num_seconds().max(1) as u64;
    (start, left)
}

/// Seconds until the upload budget starts again (the next UTC midnight): the `Retry-After` of
/// a refusal.
pub fn upload_budget_retry_after_secs() -> u64 {
    budget_day(now()).1
}

/// A kept file and the signed URL a message may carry.
pub struct Uploaded {
    pub meta: FileMeta,
    pub file_url: String,
}

/// How a download proves it may read the file.
pub struct FileAccess<'a> {
    /// The `sig` of a URL this node signed.
    pub sig: Option<&'a str>,
    /// The request's Bearer token, checked only without a valid `sig`.
    pub bearer: Option<&'a str>,
}

/// The upload use cases.
#[derive(Clone, Copy)]
pub struct Uploads<'a> {
    /// Files, and the bytes each user kept today.
    store: &'a dyn Store,
    /// `UPLOAD_BYTES_PER_DAY`.
    config: &'a Config,
    /// Signs file URLs; verifies a download's Bearer token.
    keys: &'a Keys,
    /// Upload bytes being saved on this node, per user.
    in_flight: &'a UploadsInFlight,
}

impl<'a> Uploads<'a> {
    /// The node's upload use cases.
    pub fn of(node: &'a NodeState) -> Self {
        Uploads {
            store: &*node.store,
            config: &node.config,
            keys: &node.keys,
            in_flight: &node.uploads_in_flight,
        }
    }

    /// Refuses `user` an upload of `bytes` more when it would pass the day's budget, counting
    /// `in_flight` bytes of theirs being saved on this node (these bytes included, when held).
    async fn within_upload_budget(
        &self,
        user: &AuthUser,
        bytes: u64,
        in_flight: u64,
    ) -> Result<(), AppError> {
        let budget = self.config.upload_bytes_per_day;
        let (since, _) = budget_day(now());
        let stored = self.store.uploaded_bytes_since(&user.id, since).await?;
        if stored.saturating_add(in_flight).saturating_add(bytes) > budget {
            return Err(AppError::new(
                ErrorCode::RateLimited,
                format!(
                    "upload budget used up: {budget} bytes per user per UTC day \
                     (UPLOAD_BYTES_PER_DAY); {stored} already kept today"
                ),
            ));
        }
        Ok(())
    }

    /// Before a body is read: is there any room left in `user`'s upload budget?
    pub async fn upload_budget_left(&self, user: &AuthUser) -> Result<(), AppError> {
        // One byte: an upload is at least that, and a budget with no room refuses it unread.
        self.within_upload_budget(user, 1, 0).await
    }

    /// Keeps an uploaded file (any signed-in user may upload, within the daily budget) and
    /// signs its URL. Refused past the budget, with nothing kept.
    pub async fn save_upload(&self, user: &AuthUser, upload: Upload) -> Result<Uploaded, AppError> {
        let (held, in_flight) = self.in_flight.hold(&user.id, upload.size);
        self.within_upload_budget(user, 0, in_flight).await?;
        let meta = FileMeta {
            id: FileId::generate(),
            file_name: upload.file_name,
            content_type: upload.content_type,
            size: upload.size,
            uploaded_by: user.id.clone(),
            created_at: now(),
        };
        let file_url = self.keys.files.url(&meta.id);
        self.store.save_upload(meta.clone(), upload.data).await?;
        drop(held);
        Ok(Uploaded { meta, file_url })
    }

    /// A file, to a URL this node signed (whoever presents it), or to a Bearer token of its
    /// uploader, of staff, or of a participant of a chat holding a message that carries it.
    /// `UNAUTHORIZED` without a valid `sig` or token; `NOT_FOUND` for a file that does not exist
    /// and, alike, for any other token (so a guessed id reveals nothing).
    pub async fn file(
        &self,
        id: &str,
        access: FileAccess<'_>,
    ) -> Result<(FileMeta, FileStream), AppError> {
        let signed = access.sig.is_some_and(|sig| self.keys.files.check(id, sig));
        let reader = if signed {
            None
        } else {
            let token = access
                .bearer
                .ok_or_else(|| AppError::unauthorized("a valid sig or Bearer token is required"))?;
            Some(self.keys.verifier.verify(token)?)
        };
        let id = FileId::parse(id)?;
        let not_found = || AppError::not_found("file not found");
        let (meta, data) = self.store.upload(&id).await?.ok_or_else(not_found)?;
        if let Some(user) = reader
            && !user.is_staff()
            && meta.uploaded_by != user.id
        {
            let urls = self.keys.files.issued_forms(&id);
            let shared = self.store.file_shared_with(&user.id, &urls).await?;
            if !shared {
                return Err(not_found());
            }
        }
        Ok((meta, data))
    }
}
