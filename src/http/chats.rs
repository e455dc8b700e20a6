//! `/api/chats`: open, list, read, update chats; read and post their messages. Each handler
//! parses its request and calls the use case in `service/chats.rs`, which authorizes.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{JsonBody, Params, PathId};
use crate::domain::{
    AuthUser, Chat, ChatCursor, ChatId, ChatStatus, ChatSummary, Message, MessageBodyInput, Saved,
    SendMessageInput,
};
use crate::error::AppError;
use crate::ordering::Turn;
use crate::paging::{self, decode_cursor, encode_cursor};
use crate::service::{ChatChanges, OpenChat};
use crate::state::AppState;

/// The greatest chat id (ids are 24 hex digits): a position after every chat of an instant.
const LAST_ID: &str = "ffffffffffffffffffffffff";

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(show, update))
        .routes(routes!(messages, post_message))
}

/// Open a chat: a user opens one with themself; staff open one with `{ participantId }` and
/// are its assigned admin.
#[utoipa::path(
    post,
    path = "/api/chats",
    operation_id = "openChat",
    tag = "chats",
    request_body = Option<OpenChat>,
    responses((status = 201, description = "The chat", body = Chat, links(
        ("GetChat" = (operation_id = "getChat", parameters(("chat_id" = "$response.body#/id")))),
        ("UpdateChat" = (operation_id = "updateChat", parameters(("chat_id" = "$response.body#/id")))),
        ("ListMessages" = (operation_id = "listMessages", parameters(("chat_id" = "$response.body#/id")))),
        ("PostMessage" = (operation_id = "postMessage", parameters(("chat_id" = "$response.body#/id")))),
    ))),
)]
async fn create(
    State(state): State<AppState>,
    user: AuthUser,
    JsonBody(body): JsonBody<OpenChat>,
) -> Result<(StatusCode, Json<Chat>), AppError> {
    let chat = state.chats().open_chat(&user, body).await?;
    Ok((StatusCode::CREATED, Json(chat)))
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct ChatList {
    chats: Vec<ChatSummary>,
    next_cursor: Option<String>,
}

/// List chats: a user's own, or every chat for staff; newest change first.
#[utoipa::path(
    get,
    path = "/api/chats",
    operation_id = "listChats",
    tag = "chats",
    params(
        ("status" = Option<ChatStatus>, Query, description = "Only chats with this status"),
        ("limit" = Option<super::openapi::PageLimit>, Query, description = "Page size (default 20, at most 100)"),
        ("cursor" = Option<String>, Query, description = "The `nextCursor` of the previous page"),
        ("updatedAfter" = Option<String>, Query, format = DateTime, description = "Only chats changed after this RFC 3339 instant, oldest change first"),
    ),
    responses((status = 200, description = "A page of chats", body = ChatList)),
)]
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
        .chats()
        .list_chats(&user, status, after, ascending, limit)
        .await?;
    Ok(Json(ChatList {
        chats: page.chats,
        next_cursor: page
            .next
            .map(|c| encode_cursor(c.updated_at, c.id.as_str())),
    }))
}

/// One chat, to a participant or staff.
#[utoipa::path(
    get,
    path = "/api/chats/{chat_id}",
    operation_id = "getChat",
    tag = "chats",
    params(("chat_id" = ChatId, Path, description = "The chat")),
    responses((status = 200, description = "The chat", body = Chat)),
)]
async fn show(
    State(state): State<AppState>,
    user: AuthUser,
    PathId(id): PathId,
) -> Result<Json<Chat>, AppError> {
    let id = ChatId::parse(&id)?;
    Ok(Json(state.chats().chat_for(&user, &id).await?))
}

/// Change a chat's status, priority or assigned admin (staff only).
#[utoipa::path(
    patch,
    path = "/api/chats/{chat_id}",
    operation_id = "updateChat",
    tag = "chats",
    params(("chat_id" = ChatId, Path, description = "The chat")),
    request_body = Option<ChatChanges>,
    responses((status = 200, description = "The chat as changed", body = Chat)),
)]
async fn update(
    State(state): State<AppState>,
    user: AuthUser,
    PathId(id): PathId,
    JsonBody(body): JsonBody<ChatChanges>,
) -> Result<Json<Chat>, AppError> {
    Ok(Json(state.chats().update_chat(&user, &id, body).await?))
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct History {
    messages: Vec<Message>,
    has_more: bool,
}

/// A page of a chat's messages: newest first by default and with `beforeSeq`, oldest first
/// with `afterSeq`.
#[utoipa::path(
    get,
    path = "/api/chats/{chat_id}/messages",
    operation_id = "listMessages",
    tag = "chats",
    params(
        ("chat_id" = ChatId, Path, description = "The chat"),
        ("beforeSeq" = Option<super::openapi::SeqBound>, Query, description = "Only messages with a smaller `seq`"),
        ("afterSeq" = Option<super::openapi::SeqBound>, Query, description = "Only messages with a larger `seq`, oldest first"),
        ("limit" = Option<super::openapi::PageLimit>, Query, description = "Page size (default 50, at most 100)"),
    ),
    responses((status = 200, description = "A page of messages", body = History)),
)]
async fn messages(
    State(state): State<AppState>,
    user: AuthUser,
    PathId(id): PathId,
    params: Params,
) -> Result<Json<History>, AppError> {
    let id = ChatId::parse(&id)?;
    let limit = params.limit(paging::HISTORY)?;
    let page = paging::history_page(params.raw("beforeSeq"), params.raw("afterSeq"))?;
    let (messages, has_more) = state
        .chats()
        .history(&user, &id, page, limit, Turn::unordered())
        .await?;
    Ok(Json(History { messages, has_more }))
}

/// `message:send` without `chatId`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct PostMessageBody {
    message: MessageBodyInput,
    /// Makes a retry safe: the same `(sender, clientMessageId)` returns the first save.
    #[schema(max_length = 64)]
    client_message_id: Option<String>,
}

/// Send a message to a chat (for back-end services); it is delivered live too.
#[utoipa::path(
    post,
    path = "/api/chats/{chat_id}/messages",
    operation_id = "postMessage",
    tag = "chats",
    params(("chat_id" = ChatId, Path, description = "The chat")),
    request_body = PostMessageBody,
    responses(
        (status = 201, description = "The saved message", body = Message, links(
            ("ListMessages" = (operation_id = "listMessages", parameters(("chat_id" = "$response.body#/chatId"), ("beforeSeq" = "$response.body#/seq")))),
            ("GetChat" = (operation_id = "getChat", parameters(("chat_id" = "$response.body#/chatId")))),
        )),
        (status = 200, description = "A `clientMessageId` retry: the message saved the first time", body = Message),
    ),
)]
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
    let saved = state
        .chats()
        .send_message(&user, input, Turn::unordered())
        .await?;
    Ok(match saved {
        Saved::Created(m) => (StatusCode::CREATED, Json(m)),
        Saved::Existing(m) => (StatusCode::OK, Json(m)),
    })
}
