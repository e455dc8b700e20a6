//! `/api/chats`: open, list, read, update chats; read and post their messages.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::{JsonBody, Params, PathId, decode_cursor, encode_cursor};
use crate::app::AppState;
use crate::domain::{
    AuthUser, Chat, ChatCursor, ChatId, ChatPatch, ChatQuery, ChatStatus, ChatSummary, HistoryPage,
    MAX_CHAT_TITLE_LEN, Message, MessageBodyInput, NewChat, Priority, Saved, SendMessageInput,
    check_len, parse_plain_id,
};
use crate::error::AppError;
use crate::store::StoreOp;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/chats", get(list).post(create))
        .route("/api/chats/{chat_id}", get(show).patch(update))
        .route(
            "/api/chats/{chat_id}/messages",
            get(messages).post(post_message),
        )
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateBody {
    title: Option<String>,
    priority: Option<String>,
    participant_id: Option<String>,
}

async fn create(
    State(state): State<AppState>,
    user: AuthUser,
    JsonBody(body): JsonBody<CreateBody>,
) -> Result<(StatusCode, Json<Chat>), AppError> {
    let title = body
        .title
        .map(|t| t.trim().to_owned())
        .unwrap_or_else(|| "Support chat".into());
    check_len("title", &title, 1, MAX_CHAT_TITLE_LEN)?;
    let priority = body
        .priority
        .as_deref()
        .map(Priority::parse)
        .transpose()?
        .unwrap_or(Priority::Medium);
    let chat = if user.is_staff() {
        let participant = body
            .participant_id
            .ok_or_else(|| AppError::validation("staff open a chat with { participantId }"))?;
        let participant = parse_plain_id("participantId", &participant)?;
        let mut participants = vec![participant];
        if participants[0] != user.id {
            participants.push(user.id.clone());
        }
        NewChat {
            participants,
            title,
            priority,
            assigned_admin: Some(user.id.clone()),
        }
    } else {
        if body.participant_id.is_some_and(|p| p != user.id) {
            return Err(AppError::forbidden("a user opens chats for themself only"));
        }
        NewChat {
            participants: vec![user.id.clone()],
            title,
            priority,
            assigned_admin: None,
        }
    };
    let chat = state
        .timed(StoreOp::CreateChat, state.store.create_chat(chat))
        .await?;
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
    let limit = params.limit(20, 100)?;
    let status = params.get("status").map(ChatStatus::parse).transpose()?;
    let after = params
        .get("cursor")
        .map(decode_cursor)
        .transpose()?
        .map(|(updated_at, id)| ChatCursor {
            updated_at,
            id: ChatId::from_trusted(id),
        });
    let query = ChatQuery {
        participant: (!user.is_staff()).then(|| user.id.clone()),
        status,
        limit: limit + 1,
        after,
        reader: user.id.clone(),
    };
    let mut chats = state
        .timed(StoreOp::ListChats, state.store.list_chats(&query))
        .await?;
    let next_cursor = if chats.len() > limit {
        chats.truncate(limit);
        chats
            .last()
            .map(|c| encode_cursor(c.chat.updated_at, c.chat.id.as_str()))
    } else {
        None
    };
    Ok(Json(ChatList { chats, next_cursor }))
}

async fn show(
    State(state): State<AppState>,
    user: AuthUser,
    PathId(id): PathId,
) -> Result<Json<Chat>, AppError> {
    let id = ChatId::parse(&id)?;
    Ok(Json(state.chat_for(&user, &id).await?))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PatchBody {
    status: Option<String>,
    priority: Option<String>,
    assigned_admin: Option<String>,
}

async fn update(
    State(state): State<AppState>,
    user: AuthUser,
    PathId(id): PathId,
    JsonBody(body): JsonBody<PatchBody>,
) -> Result<Json<Chat>, AppError> {
    if !user.is_staff() {
        return Err(AppError::forbidden("only staff change a chat"));
    }
    let id = ChatId::parse(&id)?;
    let patch = ChatPatch {
        status: body.status.as_deref().map(ChatStatus::parse).transpose()?,
        priority: body.priority.as_deref().map(Priority::parse).transpose()?,
        assigned_admin: body
            .assigned_admin
            .map(|a| parse_plain_id("assignedAdmin", &a))
            .transpose()?,
    };
    Ok(Json(
        state
            .timed(StoreOp::UpdateChat, state.store.update_chat(&id, patch))
            .await?,
    ))
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
    let limit = params.limit(50, 100)?;
    let page = match (params.seq("beforeSeq")?, params.seq("afterSeq")?) {
        (Some(_), Some(_)) => {
            return Err(AppError::validation("give beforeSeq or afterSeq, not both"));
        }
        (Some(b), None) => HistoryPage::Before(b),
        (None, Some(a)) => HistoryPage::After(a),
        (None, None) => HistoryPage::Latest,
    };
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
