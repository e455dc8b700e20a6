//! Uploads in the GridFS bucket `uploads`: the file's bytes in chunks, its metadata (content type,
//! uploader, creation time) on the files document.

use bytes::Bytes;
use futures_util::io::{AsyncReadExt, AsyncWriteExt};
use mongodb::bson::{Bson, doc};
use mongodb::error::Error as DbError;

use super::documents::{bson_time, domain_time, oid};
use super::{MongoStore, StoreError, StoreResult, db_err};
use crate::domain::{FileId, FileMeta};

/// GridFS chunks are written this many bytes at a time (the driver's default chunk size), so an
/// upload never needs a second copy of the file in memory and each write is bounded on its own.
const UPLOAD_SLICE: usize = 255 * 1024;

/// A file's GridFS `_id`: a string for the random 32-hex-digit ids, an ObjectId for the older
/// 24-hex-digit ones (as they were saved).
fn file_key(id: &FileId) -> StoreResult<Bson> {
    if id.is_legacy() {
        Ok(Bson::ObjectId(oid(id.as_str())?))
    } else {
        Ok(Bson::String(id.as_str().to_owned()))
    }
}

impl MongoStore {
    /// Streams an upload into the bucket, one bounded chunk write at a time.
    pub(super) async fn put_file(&self, meta: FileMeta, data: Bytes) -> StoreResult<()> {
        let id = file_key(&meta.id)?;
        self.bounded(async { self.ensure_indexes().await }).await?;
        let metadata = doc! {
            "contentType": meta.content_type.as_str(),
            "uploadedBy": meta.uploaded_by.as_str(),
            "createdAt": bson_time(meta.created_at),
        };
        let mut stream = self
            .bounded(async {
                self.0
                    .uploads
                    .open_upload_stream(&meta.file_name)
                    .id(id)
                    .metadata(metadata)
                    .await
                    .map_err(db_err)
            })
            .await?;
        // Each slice (one GridFS chunk) is written and bounded on its own, so a 10 MiB file over
        // a slow link is not cut off by a timeout meant for one round trip, and a dead server
        // still fails within one timeout.
        let mut written: StoreResult<()> = Ok(());
        for slice in data.chunks(UPLOAD_SLICE) {
            written = self
                .bounded(async { stream.write_all(slice).await.map_err(io_err) })
                .await;
            if written.is_err() {
                break;
            }
        }
        if written.is_ok() {
            // `close` writes the last chunk and then the files document, which makes the file
            // visible: a failed upload never shows up half-written.
            written = self
                .bounded(async { stream.close().await.map_err(io_err) })
                .await;
        }
        if written.is_err() {
            let _ = tokio::time::timeout(self.0.timeout, stream.abort()).await;
        }
        written
    }

    /// Reads an upload and its metadata back.
    pub(super) async fn get_file(&self, id: &FileId) -> StoreResult<Option<(FileMeta, Bytes)>> {
        let key = file_key(id)?;
        let file = self
            .bounded(async {
                self.ensure_indexes().await?;
                self.0
                    .uploads
                    .find_one(doc! { "_id": key.clone() })
                    .await
                    .map_err(db_err)
            })
            .await?;
        let Some(file) = file else { return Ok(None) };
        let metadata = file.metadata.unwrap_or_default();
        let meta = FileMeta {
            id: id.clone(),
            file_name: file.filename.unwrap_or_default(),
            content_type: metadata
                .get_str("contentType")
                .unwrap_or("application/octet-stream")
                .to_owned(),
            size: file.length,
            uploaded_by: metadata
                .get_str("uploadedBy")
                .unwrap_or_default()
                .to_owned(),
            created_at: metadata
                .get_datetime("createdAt")
                .map(|t| domain_time(*t))
                .unwrap_or_else(|_| domain_time(file.upload_date)),
        };
        let data = self
            .bounded(async {
                let mut stream = self
                    .0
                    .uploads
                    .open_download_stream(key)
                    .await
                    .map_err(db_err)?;
                let mut data = Vec::with_capacity(file.length as usize);
                stream.read_to_end(&mut data).await.map_err(io_err)?;
                Ok(data)
            })
            .await?;
        Ok(Some((meta, Bytes::from(data))))
    }
}

/// GridFS streams report driver errors wrapped in `std::io::Error`.
fn io_err(e: std::io::Error) -> StoreError {
    match e.into_inner().map(|inner| inner.downcast::<DbError>()) {
        Some(Ok(db)) => db_err(*db),
        Some(Err(other)) => StoreError::Unavailable(other.to_string()),
        None => StoreError::Unavailable("MongoDB connection failed".to_owned()),
    }
}
