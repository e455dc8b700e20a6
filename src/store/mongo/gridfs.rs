//! Uploads in the GridFS bucket `uploads`: the file's bytes in chunks, its metadata (content type,
//! uploader, creation time) on the files document; and whether a caller shares a chat with a
//! message that carries a file (a download by Bearer token).

use futures_util::io::AsyncWriteExt;
use futures_util::stream::TryStreamExt;
use mongodb::bson::{Bson, Document, doc};
use mongodb::error::Error as DbError;
use tokio::io::AsyncReadExt;

use super::documents::{bson_time, domain_time, oid};
use super::indexes::IX_MESSAGES_FILE_URL;
use super::queries::hint;
use super::{MongoStore, StoreError, StoreResult, db_err};
use crate::domain::{FileId, FileMeta, Timestamp};
use crate::store::{FileReader, FileStream};

/// GridFS chunks are written this many bytes at a time (the driver's default chunk size), so an
/// upload holds one slice in memory, never the file, and each write is bounded on its own.
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
    pub(super) async fn put_file(&self, meta: FileMeta, mut data: FileReader) -> StoreResult<()> {
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
        let mut slice = Vec::with_capacity(UPLOAD_SLICE);
        let mut total = 0u64;
        loop {
            slice.clear();
            // Fill one slice from the received file (local disk: no timeout needed).
            let filled = async {
                while slice.len() < UPLOAD_SLICE {
                    let room = UPLOAD_SLICE - slice.len();
                    if (&mut data)
                        .take(room as u64)
                        .read_to_end(&mut slice)
                        .await?
                        == 0
                    {
                        break;
                    }
                }
                Ok::<_, std::io::Error>(())
            }
            .await;
            if let Err(e) = filled {
                written = Err(StoreError::Internal(format!("reading the upload: {e}")));
                break;
            }
            if slice.is_empty() {
                break;
            }
            total += slice.len() as u64;
            written = self
                .bounded(async { stream.write_all(&slice).await.map_err(io_err) })
                .await;
            if written.is_err() {
                break;
            }
        }
        if written.is_ok() && total != meta.size {
            written = Err(StoreError::Internal(format!(
                "upload of {} bytes had {total}",
                meta.size
            )));
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
    pub(super) async fn get_file(
        &self,
        id: &FileId,
    ) -> StoreResult<Option<(FileMeta, FileStream)>> {
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
        let stream = self
            .bounded(async {
                self.0
                    .uploads
                    .open_download_stream(key)
                    .await
                    .map_err(db_err)
            })
            .await?;
        // Read a slice at a time as the response is sent, each read bounded by the store's
        // timeout, so a slow reader holds one slice, never the file.
        let timeout = self.0.timeout;
        let stream = futures_util::stream::try_unfold(stream, move |mut stream| async move {
            let mut buf = vec![0u8; crate::store::FILE_SLICE];
            let n = tokio::time::timeout(
                timeout,
                futures_util::io::AsyncReadExt::read(&mut stream, &mut buf),
            )
            .await
            .map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::TimedOut, "MongoDB read timed out")
            })??;
            buf.truncate(n);
            Ok((n > 0).then(|| (bytes::Bytes::from(buf), stream)))
        });
        let stream: FileStream = Box::pin(stream);
        Ok(Some((meta, stream)))
    }

    /// Bytes `user` uploaded since `since`: the sum of `length` over the user's recent files
    /// (served by `uploads_by_user`).
    pub(super) async fn uploaded_since(&self, user: &str, since: Timestamp) -> StoreResult<u64> {
        use futures_util::TryStreamExt;
        self.bounded(async {
            self.ensure_indexes().await?;
            let files: mongodb::Collection<mongodb::bson::Document> =
                self.0.db.collection("uploads.files");
            let mut cursor = files
                .aggregate([
                    doc! { "$match": uploads_by_user_filter(user, since) },
                    doc! { "$group": { "_id": Bson::Null, "bytes": { "$sum": "$length" } } },
                ])
                .hint(mongodb::options::Hint::Name(
                    super::indexes::IX_UPLOADS_USER.to_owned(),
                ))
                .await
                .map_err(db_err)?;
            let total = match cursor.try_next().await.map_err(db_err)? {
                Some(d) => match d.get("bytes") {
                    Some(Bson::Int64(n)) => *n,
                    Some(Bson::Int32(n)) => i64::from(*n),
                    Some(Bson::Double(n)) => *n as i64,
                    _ => 0,
                },
                None => 0,
            };
            Ok(total.max(0) as u64)
        })
        .await
    }
}

/// The files `user` uploaded since `since` (the upload budget's query).
pub(super) fn uploads_by_user_filter(user: &str, since: Timestamp) -> mongodb::bson::Document {
    doc! { "metadata.uploadedBy": user, "metadata.createdAt": { "$gte": bson_time(since) } }
}

/// GridFS streams report driver errors wrapped in `std::io::Error`.
fn io_err(e: std::io::Error) -> StoreError {
    match e.into_inner().map(|inner| inner.downcast::<DbError>()) {
        Some(Ok(db)) => db_err(*db),
        Some(Err(other)) => StoreError::Unavailable(other.to_string()),
        None => StoreError::Unavailable("MongoDB connection failed".to_owned()),
    }
}

impl MongoStore {
    /// Whether `user_id` is a participant of a chat holding a message that carries one of
    /// `file_urls` (a download by Bearer token).
    pub(super) async fn carried_in_chat_of(
        &self,
        user_id: &str,
        file_urls: &[String],
    ) -> StoreResult<bool> {
        /// A file is carried by a handful of messages; more chats than this are not looked at
        /// (a file forwarded into more chats than this still opens by its `sig`).
        const MAX_CHATS: i64 = 100;
        if file_urls.is_empty() {
            return Ok(false);
        }
        self.bounded(async {
            self.ensure_indexes().await?;
            let chats: Vec<Bson> = self
                .0
                .messages
                .clone_with_type::<Document>()
                .find(doc! { "fileUrl": { "$in": file_urls } })
                .projection(doc! { "_id": 0, "chatId": 1 })
                .hint(hint(IX_MESSAGES_FILE_URL))
                .limit(MAX_CHATS)
                .await
                .map_err(db_err)?
                .try_collect::<Vec<Document>>()
                .await
                .map_err(db_err)?
                .into_iter()
                .filter_map(|d| d.get("chatId").cloned())
                .collect();
            if chats.is_empty() {
                return Ok(false);
            }
            let shared = self
                .0
                .chats
                .clone_with_type::<Document>()
                .find_one(doc! { "_id": { "$in": chats }, "participants": user_id })
                .projection(doc! { "_id": 1 })
                .await
                .map_err(db_err)?;
            Ok(shared.is_some())
        })
        .await
    }
}
