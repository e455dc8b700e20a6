//! Uploads: what the store keeps about an uploaded file, and how large one may be.

use super::{FileId, Timestamp};

/// The largest upload accepted.
pub const MAX_UPLOAD_BYTES: u64 = 10 * 1024 * 1024;

/// An uploaded file's description.
#[derive(Debug, Clone, PartialEq)]
pub struct FileMeta {
    pub id: FileId,
    pub file_name: String,
    pub content_type: String,
    pub size: u64,
    pub uploaded_by: String,
    pub created_at: Timestamp,
}
