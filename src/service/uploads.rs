//! Uploaded files: keep one, and hand one out to a signed URL or to a signed-in caller who may
//! read it (its uploader, staff, or a participant of a chat that carries it).

use bytes::Bytes;

use crate::domain::{AuthUser, FileId, FileMeta, now};
use crate::error::AppError;
use crate::state::AppState;
use crate::store::StoreOp;

/// A file as it was received, its name and content type already cleaned by the transport.
pub struct Upload {
    pub file_name: String,
    pub content_type: String,
    pub data: Bytes,
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

impl AppState {
    /// Keeps an uploaded file (any signed-in user may upload) and signs its URL.
    pub async fn save_upload(&self, user: &AuthUser, upload: Upload) -> Result<Uploaded, AppError> {
        let meta = FileMeta {
            id: FileId::generate(),
            file_name: upload.file_name,
            content_type: upload.content_type,
            size: upload.data.len() as u64,
            uploaded_by: user.id.clone(),
            created_at: now(),
        };
        let file_url = self.keys.files.url(&meta.id);
        self.timed(
            StoreOp::SaveUpload,
            self.store.save_upload(meta.clone(), upload.data),
        )
        .await?;
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
    ) -> Result<(FileMeta, Bytes), AppError> {
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
        let (meta, data) = self
            .timed(StoreOp::Upload, self.store.upload(&id))
            .await?
            .ok_or_else(not_found)?;
        if let Some(user) = reader
            && !user.is_staff()
            && meta.uploaded_by != user.id
        {
            let urls = self.keys.files.issued_forms(&id);
            let shared = self
                .timed(
                    StoreOp::FileSharedWith,
                    self.store.file_shared_with(&user.id, &urls),
                )
                .await?;
            if !shared {
                return Err(not_found());
            }
        }
        Ok((meta, data))
    }
}
