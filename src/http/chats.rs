//! `/api/chats`: open, list, read, update chats; read and post their messages. Each handler
//! parses its request and calls the use case in `service/chats.rs`, which authorizes.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::{JsonBody, Params, PathId};
use crate::domain::{
    AuthUser, Chat, ChatCursor, ChatId, ChatStatus, ChatSummary, Message, MessageBodyInput, Saved,
    SendMessageInput,
};
use crate::error::AppError;
use crate::paging::{self, decode_cursor, encode_cursor};
use crate::service::{ChatChanges, OpenChat};
use crate::state::AppState;

/// The greatest chat id (ids are 24 hex digits): a position after every chat of an instant.
const LAST_ID: &str = "ffffffffffffffffffffffff";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/chats", get(list).post(create))
        .route("/api/chats/{chat_id}", get(show).patch(update))
        .route(
            "/api/chats/{chat_id}/messages",
            get(messages).post(post_message),
        )
}

async fn create(
    State(state): State<AppState>,
    user: AuthUser,
    JsonBody(body): JsonBody<OpenChat>,
) -> Result<(StatusCode, Json<Chat>), AppError> {
    let chat = state.open_chat(&user, body).await?;
    Ok((StatusCode::CREATED, Json(chat)))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ChatList {
    chats: Vec<ChatSummary>,
    next_cursor: Option<String>,
}

async fn list(
    State(state): State<AppState>,
    user: AuthUser,
    params: Params,
) -> Result<Json<ChatList>, AppError> {
    let limit = params.limit(paging::LISTS)?;
    let status = params.get("status").map(ChatStatus::parse).transpose()?;
    let after = params
        .get("cursor")
        .map(decode_cursor)
        .transpose()?
        .map(|(updated_at, id)| ChatCursor {
            updated_at,
            id: ChatId::from_trusted(id),
        });
    // `updatedAfter`: the chats changed after that instant, oldest change first; a cursor
    // from such a page goes on from there.
    let updated_after = params
        .get("updatedAfter")
        .map(|t| {
            chrono::DateTime::parse_from_rfc3339(t)
                .map(|t| t.with_timezone(&chrono::Utc))
                .map_err(|_| AppError::validation("updatedAfter must be an RFC 3339 time"))
        })
        .transpose()?;
    let ascending = updated_after.is_some();
    let after = after.or_else(|| {
        // Strictly after the instant: past every id changed at that very millisecond.
        updated_after.map(|updated_at| ChatCursor {
            updated_at,
            id: ChatId::from_trusted(LAST_ID.to_owned()),
        })
    });
    let page = state
        .list_chats(&user, status, after, ascending, limit)
        .await?;
    Ok(Json(ChatList {
        chats: page.chats,
        next_cursor: page
            .next
            .map(|c| encode_cursor(c.updated_at, c.id.as_str())),
    }))
}

async fn show(
    State(state): State<AppState>,
    user: AuthUser,
    PathId(id): PathId,
) -> Result<Json<Chat>, AppError> {
    let id = ChatId::parse(&id)?;
    Ok(Json(state.chat_for(&user, &id).await?))
}

async fn update(
    State(state): State<AppState>,
    user: AuthUser,
    PathId(id): PathId,
    JsonBody(body): JsonBody<ChatChanges>,
) -> Result<Json<Chat>, AppError> {
    Ok(Json(state.update_chat(&user, &id, body).await?))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct History {
    messages: Vec<Message>,
    has_more: bool,
}

async fn messages(
    State(state): State<AppState>,
    user: AuthUser,
    PathId(id): PathId,
    params: Params,
) -> Result<Json<History>, AppError> {
    let id = ChatId::parse(&id)?;
    let limit = params.limit(paging::HISTORY)?;
    let page = paging::history_page(params.raw("beforeSeq"), params.raw("afterSeq"))?;
    let (messages, has_more) = state.history(&user, &id, page, limit).await?;
    Ok(Json(History { messages, has_more }))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PostMessageBody {
    message: MessageBodyInput,
    client_message_id: Option<String>,
}

async fn post_message(
    State(state): State<AppState>,
    user: AuthUser,
    PathId(id): PathId,
    JsonBody(body): JsonBody<PostMessageBody>,
) -> Result<(StatusCode, Json<Message>), AppError> {
    let input = SendMessageInput {
        chat_id: id,
        message: body.message,
        client_message_id: body.client_message_id,
    };
    let saved = state.send_message(&user, input).await?;
    Ok(match saved {
        Saved::Created(m) => (StatusCode::CREATED, Json(m)),
        Saved::Existing(m) => (StatusCode::OK, Json(m)),
    })
}
