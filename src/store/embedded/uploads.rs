//! Uploads in the embedded store: each file in the uploads directory under its id, written
//! whole before it appears there, its metadata in the `uploads` table; and whether a caller
//! shares a chat with a message that carries a file (a download by Bearer token).

use rusqlite::{OptionalExtension, params};

use super::{EmbeddedStore, from_ms, internal, ms};
use crate::domain::{FileId, FileMeta, Timestamp};
use crate::private_files;
use crate::store::{FileReader, FileStream, StoreResult};

impl EmbeddedStore {
    pub(super) async fn put_file(&self, meta: FileMeta, mut data: FileReader) -> StoreResult<()> {
        let path = self.uploads_dir.join(meta.id.as_str());
        let tmp = self.uploads_dir.join(format!("{}.partial", meta.id));
        // Copied a slice at a time; the file appears under its id only once complete and
        // synced, and a failed copy leaves nothing behind.
        let copied = async {
            use tokio::io::AsyncWriteExt;
            let created = tmp.clone();
            let f = tokio::task::spawn_blocking(move || private_files::create_file(&created))
                .await
                .map_err(std::io::Error::other)??;
            let mut f = tokio::fs::File::from_std(f);
            let n = tokio::io::copy(&mut data, &mut f).await?;
            if n != meta.size {
                return Err(std::io::Error::other(format!(
                    "upload of {} bytes had {n}",
                    meta.size
                )));
            }
            f.flush().await?;
            f.sync_all().await?;
            tokio::fs::rename(&tmp, &path).await
        }
        .await;
        if let Err(e) = copied {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(internal(e));
        }
        self.run(move |conn| {
            conn.execute(
                "INSERT INTO uploads (id, file_name, content_type, size, uploaded_by, created_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    meta.id.as_str(),
                    meta.file_name,
                    meta.content_type,
                    meta.size as i64,
                    meta.uploaded_by,
                    ms(meta.created_at)
                ],
            )
            .map(drop)
        })
        .await
    }

    pub(super) async fn get_file(
        &self,
        id: &FileId,
    ) -> StoreResult<Option<(FileMeta, FileStream)>> {
        let key = id.as_str().to_owned();
        let meta = self
            .run(move |conn| {
                conn.query_row(
                    "SELECT id, file_name, content_type, size, uploaded_by, created_at FROM uploads WHERE id = ?1",
                    params![key],
                    |r| {
                        Ok(FileMeta {
                            id: FileId::from_trusted(r.get(0)?),
                            file_name: r.get(1)?,
                            content_type: r.get(2)?,
                            size: r.get::<_, i64>(3)? as u64,
                            uploaded_by: r.get(4)?,
                            created_at: from_ms(r.get(5)?),
                        })
                    },
                )
                .optional()
            })
            .await?;
        let Some(meta) = meta else { return Ok(None) };
        let file = tokio::fs::File::open(self.uploads_dir.join(meta.id.as_str()))
            .await
            .map_err(internal)?;
        Ok(Some((meta, crate::store::stream_reader(file))))
    }

    pub(super) async fn uploaded_since(&self, user_id: &str, since: Timestamp) -> StoreResult<u64> {
        let user = user_id.to_owned();
        self.run(move |conn| {
            // `uploads_by_user` serves it: one range of the user's recent uploads.
            conn.query_row(
                "SELECT COALESCE(SUM(size), 0) FROM uploads WHERE uploaded_by = ?1 AND created_at >= ?2",
                params![user, ms(since)],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n.max(0) as u64)
        })
        .await
    }

    pub(super) async fn carried_in_chat_of(
        &self,
        user_id: &str,
        file_urls: &[String],
    ) -> StoreResult<bool> {
        let user = user_id.to_owned();
        let urls = file_urls.to_vec();
        self.run(move |conn| {
            // One indexed probe per form of the URL (at most two): `messages_by_file_url`
            // finds the messages, the participants key checks membership.
            let mut stmt = conn.prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM messages m JOIN chat_participants p \
                 ON p.chat_id = m.chat_id AND p.user_id = ?2 WHERE m.file_url = ?1)",
            )?;
            for url in &urls {
                if stmt.query_row(params![url, user], |r| r.get::<_, bool>(0))? {
                    return Ok(true);
                }
            }
            Ok(false)
        })
        .await
    }
}
