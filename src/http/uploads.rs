//! `POST /api/uploads` and `GET /api/files/{fileId}`: the multipart streaming and the response
//! headers live here; keeping and handing out a file (and who may) is `service/uploads.rs`.
//!
//! Neither direction holds a file in memory: an upload is received into a private file under
//! `DATA_DIR/incoming/` (unlinked as soon as it is created, so nothing is left behind even by a
//! crash) and the store copies it from there a slice at a time; a download is read from the
//! store a slice at a time as the client takes it. Ten stalled 10 MiB uploads held +135 MB
//! and ten unread downloads +73 MB when both were buffered. How long either may take is
//! `serve.rs`'s: the whole upload request within `UPLOAD_TIMEOUT_SECS`, and a download whose
//! client reads nothing for `REQUEST_TIMEOUT_SECS` is cut off. Each user's uploads are
//! bounded by `UPLOAD_BYTES_PER_DAY` (`RATE_LIMITED` with `Retry-After` past it, checked before
//! the body is read and again before the file is kept).
//!
//! The 10 MiB limit is enforced while the multipart body streams in: nothing past the first
//! chunk over the limit is buffered, and the whole body (every field, not only `file`) is
//! capped at [`MAX_UPLOAD_BODY_BYTES`], so junk fields before `file` are not read through
//! either. The rest of a file that is too large is still read and thrown away (up to
//! [`MAX_DISCARD_BYTES`]): closing a connection with unread data resets it, and the client
//! would see a broken pipe instead of the `413`. An upload without a valid token is refused
//! before its body is read: the `401` is sent and the connection closed (a body of at most
//! 64 KiB is read first, so an ordinary client sees the answer rather than a reset).

use std::path::Path;

use axum::Json;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, FromRequest, Multipart, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{Params, PathId};
use crate::domain::{AuthUser, FileId, MAX_FILE_NAME_LEN, MAX_UPLOAD_BYTES};
use crate::error::{AppError, ErrorCode};
use crate::service::{FileAccess, Upload};
use crate::state::AppState;
use tokio::io::{AsyncSeekExt, AsyncWriteExt};

pub fn routes() -> OpenApiRouter<AppState> {
    // The handler enforces the file's limit itself while streaming; this caps the whole body
    // (axum's 2 MB default would refuse legal uploads).
    let (schemas, paths, upload) = routes!(upload);
    let upload = upload.layer(DefaultBodyLimit::max(MAX_UPLOAD_BODY_BYTES as usize));
    OpenApiRouter::new()
        .routes((schemas, paths, upload))
        .routes(routes!(download))
}

/// The multipart body of an upload (documentation only: it is read as a stream).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct UploadForm {
    /// The file, at most 10 MiB; its name and content type come from the part's headers.
    #[schema(value_type = String, format = Binary, content_media_type = "application/octet-stream")]
    file: Vec<u8>,
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct Uploaded {
    file_id: FileId,
    file_url: String,
    file_name: String,
    size: u64,
    content_type: String,
}

fn too_large() -> AppError {
    AppError::new(ErrorCode::PayloadTooLarge, "files are limited to 10 MiB")
}

/// The largest multipart body read: the file's 10 MiB plus room for the multipart framing and
/// a few small fields.
pub const MAX_UPLOAD_BODY_BYTES: u64 = MAX_UPLOAD_BYTES + 64 * 1024;

/// Most bytes of a refused upload read and thrown away before the connection is cut.
const MAX_DISCARD_BYTES: u64 = 4 * MAX_UPLOAD_BYTES;

/// Most bytes of an upload without a valid token read (and thrown away) before the `401`, and
/// how long that may take.
const MAX_ANONYMOUS_DISCARD_BYTES: u64 = 64 * 1024;
const ANONYMOUS_DISCARD_TIME: std::time::Duration = std::time::Duration::from_secs(1);

/// Reads and drops the rest of a refused body (at most `limit` bytes), so the client gets to
/// read the answer.
async fn discard(body: Body, limit: u64) {
    use futures_util::StreamExt;
    let mut stream = body.into_data_stream();
    let mut seen = 0u64;
    while let Some(Ok(chunk)) = stream.next().await {
        seen += chunk.len() as u64;
        if seen > limit {
            break;
        }
    }
}

/// A content type worth keeping: `type/subtype` in plain ASCII, else `application/octet-stream`.
fn clean_content_type(ct: Option<&str>) -> String {
    match ct {
        Some(ct)
            if ct.len() <= 127
                && ct
                    .split_once('/')
                    .is_some_and(|(a, b)| !a.is_empty() && !b.is_empty())
                && ct
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"/.+-_".contains(&b)) =>
        {
            ct.to_ascii_lowercase()
        }
        _ => "application/octet-stream".into(),
    }
}

/// Where upload bodies are received: `DATA_DIR/incoming/`.
pub fn incoming_dir(data_dir: &Path) -> std::path::PathBuf {
    data_dir.join("incoming")
}

/// A new private file in `dir` for one upload's body, already unlinked where the platform
/// allows (it lives while open; a crash leaves nothing).
async fn receiving_file(dir: &Path) -> Result<tokio::fs::File, AppError> {
    let path = dir.join(format!("{}.part", FileId::generate()));
    let file = tokio::task::spawn_blocking(move || {
        let file = crate::private_files::create_scratch_file(&path)?;
        #[cfg(unix)]
        std::fs::remove_file(&path)?;
        Ok::<_, std::io::Error>(file)
    })
    .await
    .map_err(|e| AppError::new(ErrorCode::Internal, e.to_string()))?
    .map_err(|e| {
        tracing::error!(error = %e, "could not create a file to receive an upload");
        AppError::new(ErrorCode::Internal, "could not receive the upload")
    })?;
    Ok(tokio::fs::File::from_std(file))
}

/// A refusal, with `Retry-After` when the upload budget is used up (until the next UTC day).
fn refusal(e: AppError) -> Response {
    let budget = e.code == ErrorCode::RateLimited;
    let mut response = e.into_response();
    if budget {
        let secs = crate::service::uploads::upload_budget_retry_after_secs();
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    response
}

/// Upload a file (multipart field `file`, at most 10 MiB) for a `file` message.
#[utoipa::path(
    post,
    path = "/api/uploads",
    operation_id = "uploadFile",
    tag = "files",
    request_body(content = UploadForm, content_type = "multipart/form-data"),
    responses(
        (status = 201, description = "The kept file and its signed URL", body = Uploaded, links(
            ("DownloadFile" = (operation_id = "downloadFile", parameters(("file_id" = "$response.body#/fileId")))),
        )),
        (status = 429, description = "RATE_LIMITED: over the user's budget of writes or of upload bytes a day", body = super::openapi::ErrorResponse,
            headers(("Retry-After" = u64, description = "Whole seconds to wait"))),
    ),
)]
async fn upload(
    state: State<AppState>,
    user: Result<AuthUser, AppError>,
    request: Request,
) -> Response {
    match receive_upload(state, user, request).await {
        Ok(created) => created.into_response(),
        Err(e) => refusal(e),
    }
}

async fn receive_upload(
    State(state): State<AppState>,
    user: Result<AuthUser, AppError>,
    request: Request,
) -> Result<(StatusCode, Json<Uploaded>), AppError> {
    // Refused before its body is read: an anonymous client gets at most a small body read
    // (so that an ordinary client reads the `401` rather than a reset connection), nothing at
    // all when it announces more.
    let user = match user {
        Ok(user) => user,
        Err(e) => {
            let declared = request
                .headers()
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            if declared.is_some_and(|n| n <= MAX_ANONYMOUS_DISCARD_BYTES) {
                let _ = tokio::time::timeout(
                    ANONYMOUS_DISCARD_TIME,
                    discard(request.into_body(), MAX_ANONYMOUS_DISCARD_BYTES),
                )
                .await;
            }
            return Err(e);
        }
    };
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_UPLOAD_BODY_BYTES) {
        discard(request.into_body(), MAX_DISCARD_BYTES).await;
        return Err(too_large());
    }
    // A user with no budget left today is refused before the body is received.
    if let Err(e) = state.uploads().upload_budget_left(&user).await {
        discard(request.into_body(), MAX_UPLOAD_BODY_BYTES).await;
        return Err(e);
    }
    let mut multipart = Multipart::from_request(request, &state)
        .await
        .map_err(|_| AppError::validation("expected a multipart/form-data body"))?;
    // Past the whole body's cap the multipart reader fails with a 413 of its own.
    let bad = |e: axum::extract::multipart::MultipartError| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            too_large()
        } else {
            AppError::validation("malformed multipart body")
        }
    };
    while let Some(mut field) = multipart.next_field().await.map_err(bad)? {
        if field.name() != Some("file") {
            continue;
        }
        let file_name = field
            .file_name()
            .map(|n| n.trim().to_owned())
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "file".into());
        let file_name: String = file_name
            .chars()
            .filter(|c| !c.is_control())
            .take(MAX_FILE_NAME_LEN)
            .collect();
        let content_type = clean_content_type(field.content_type());
        let mut file = receiving_file(&incoming_dir(&state.config.data_dir)).await?;
        let write_failed = |e: std::io::Error| {
            tracing::error!(error = %e, "could not write a received upload");
            AppError::new(ErrorCode::Internal, "could not receive the upload")
        };
        let mut size = 0u64;
        let mut refused = 0u64;
        while let Some(chunk) = field.chunk().await.map_err(bad)? {
            if refused > 0 || size + chunk.len() as u64 > MAX_UPLOAD_BYTES {
                // Over the limit: keep reading (see the module doc), but keep nothing.
                refused += chunk.len() as u64;
                if refused > MAX_DISCARD_BYTES {
                    break;
                }
                continue;
            }
            // Each chunk goes to disk as it comes: the body is never whole in memory.
            file.write_all(&chunk).await.map_err(write_failed)?;
            size += chunk.len() as u64;
        }
        if refused > 0 {
            return Err(too_large());
        }
        file.flush().await.map_err(write_failed)?;
        file.rewind().await.map_err(write_failed)?;
        let kept = state
            .uploads()
            .save_upload(
                &user,
                Upload {
                    file_name,
                    content_type,
                    data: Box::new(file),
                    size,
                },
            )
            .await?;
        let uploaded = Uploaded {
            file_url: kept.file_url,
            file_id: kept.meta.id,
            file_name: kept.meta.file_name,
            size: kept.meta.size,
            content_type: kept.meta.content_type,
        };
        return Ok((StatusCode::CREATED, Json(uploaded)));
    }
    Err(AppError::validation(
        "the multipart field 'file' is missing",
    ))
}

/// Content types a browser may show inline; everything else downloads as an attachment.
fn inline(ct: &str) -> bool {
    ct.starts_with("image/") && ct != "image/svg+xml"
        || ct == "application/pdf"
        || ct == "text/plain"
        || ct.starts_with("audio/")
        || ct.starts_with("video/")
}

/// A file: with the `sig` its `fileUrl` carries, or a bearer token of the uploader, of staff,
/// or of a participant of a chat with a message that carries it.
#[utoipa::path(
    get,
    path = "/api/files/{file_id}",
    operation_id = "downloadFile",
    tag = "files",
    security((), ("bearerAuth" = [])),
    params(
        ("file_id" = FileId, Path, description = "The file"),
        ("sig" = Option<String>, Query, description = "The signature its `fileUrl` carries"),
    ),
    responses(
        (status = 200, description = "The file, with its content type", content_type = "*/*", body = Vec<u8>),
        (status = 401, description = "UNAUTHORIZED: no valid `sig` and no valid token", body = super::openapi::ErrorResponse),
        (status = 403, description = "FORBIDDEN: the token's user may not read it", body = super::openapi::ErrorResponse),
    ),
)]
async fn download(
    State(state): State<AppState>,
    PathId(id): PathId,
    params: Params,
    headers: axum::http::HeaderMap,
) -> Result<Response, AppError> {
    let access = FileAccess {
        sig: params.get("sig"),
        bearer: crate::auth::bearer(&headers),
    };
    let (meta, data) = state.uploads().file(&id, access).await?;
    let disposition = if inline(&meta.content_type) {
        "inline"
    } else {
        "attachment"
    };
    let ascii_name: String = meta
        .file_name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || ".-_ ".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    // Streamed from the store a slice at a time as the client reads (never whole in memory).
    let mut response = Body::from_stream(data).into_response();
    if let Ok(len) = HeaderValue::from_str(&meta.size.to_string()) {
        response.headers_mut().insert(header::CONTENT_LENGTH, len);
    }
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(&meta.content_type)
            .unwrap_or(HeaderValue::from_static("application/octet-stream")),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("{disposition}; filename=\"{ascii_name}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("sandbox; default-src 'none'"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=3600"),
    );
    Ok(response)
}
