//! The REST API: one file per resource, one router, errors as `{ error: { code, message } }`.

use std::collections::HashMap;
use std::time::Instant;

use axum::Router;
use axum::extract::{FromRequest, FromRequestParts, MatchedPath, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

use crate::config::Environment;
use crate::error::AppError;
use crate::paging::{self, Raw};
use crate::state::AppState;

pub mod admission;
pub mod api_docs;
pub mod audit;
pub mod chats;
pub mod console;
pub mod desk;
pub mod health;
pub mod openapi;
pub mod origin;
pub mod presence;
pub mod reports;
pub mod slim;
pub mod uploads;
pub mod webhooks;

/// Largest JSON body accepted (uploads have their own limit).
const MAX_JSON_BODY: usize = 64 * 1024;

/// Every REST route; `/metrics` is added by `app.rs` (it may live on its own port).
pub fn router(state: AppState) -> Router {
    let mut routes = Router::new();
    // The development console exists only in development: in production its paths are unknown
    // routes like any other, refused before a body is read.
    if state.config.environment == Environment::Development {
        routes = routes
            .merge(console::routes(console::ConsoleGate::start(
                &state.config.data_dir,
            )))
            .merge(api_docs::routes());
    }
    routes
        .merge(Router::from(documented_routes()))
        .fallback(no_route)
        .method_not_allowed_fallback(no_route)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            desk::removal_gate,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            write_budget,
        ))
        .layer(axum::middleware::from_fn_with_state(state.clone(), track))
        .with_state(state)
}

/// Every route of the public API, each registered from its handler's `#[utoipa::path]`
/// annotation, so what is served and what `GET /api/openapi.json` lists are one declaration (a
/// resource file adds its endpoints here with one `merge`; see `openapi.rs`).
pub fn documented_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .merge(chats::routes())
        .merge(reports::routes())
        .merge(uploads::routes())
        .merge(presence::routes())
        .merge(desk::routes())
        .merge(audit::routes())
        .merge(webhooks::routes())
        .merge(health::routes())
        .merge(openapi::routes())
}

/// Counts and times each request by route template, never by concrete path.
async fn track(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let route = state.metrics.http_route(
        req.extensions()
            .get::<MatchedPath>()
            .map(MatchedPath::as_str),
    );
    let started = Instant::now();
    let response = next.run(req).await;
    route.record(response.status().as_u16(), started.elapsed());
    response
}

/// Every REST write (`POST`, `PATCH`; uploads included) draws on its user's budget
/// (`RATE_LIMIT_PER_SEC`, bursts of twice that, per node: see `state/user_limits.rs`); past it,
/// `429` `RATE_LIMITED` with `Retry-After`, before the handler runs or any body is read. A
/// request without a valid token passes on, to be refused by its handler.
async fn write_budget(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if matches!(*req.method(), Method::POST | Method::PATCH) {
        let user =
            crate::auth::bearer(req.headers()).and_then(|t| state.keys.verifier.verify(t).ok());
        if let Some(user) = user
            && let Err(wait) = state.user_limits.take_write(&user.id)
        {
            let mut response = AppError::new(
                crate::error::ErrorCode::RateLimited,
                "too many writes; retry later",
            )
            .into_response();
            // Whole seconds, rounded up (at least 1).
            let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
            return response;
        }
    }
    next.run(req).await
}

/// Unknown paths and methods get a JSON error like every other refusal.
async fn no_route() -> AppError {
    AppError::not_found("no such route")
}

/// The one path parameter of a route (an id), as text; a segment that is not valid UTF-8 is
/// `VALIDATION` (axum's own `Path` would answer in plain text).
pub struct PathId(pub String);

impl<S: Send + Sync> FromRequestParts<S> for PathId {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, AppError> {
        axum::extract::Path::<String>::from_request_parts(parts, state)
            .await
            .map(|p| PathId(p.0))
            .map_err(|_| AppError::validation("malformed path"))
    }
}

/// A JSON body whose every failure (bad syntax, wrong types, too large) is `VALIDATION`.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = AppError;

    async fn from_request(req: Request, _: &S) -> Result<Self, AppError> {
        let body = axum::body::to_bytes(req.into_body(), MAX_JSON_BODY)
            .await
            .map_err(|_| {
                AppError::new(
                    crate::error::ErrorCode::PayloadTooLarge,
                    "request body too large",
                )
            })?;
        let body = if body.iter().all(u8::is_ascii_whitespace) {
            &b"{}"[..]
        } else {
            &body[..]
        };
        // Every body of this API is an object; serde would also fill a struct from an array
        // (`[null, null]` disconnected a user: found by schemathesis).
        if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err(AppError::validation("the body must be a JSON object"));
        }
        serde_json::from_slice(body)
            .map(JsonBody)
            .map_err(|e| AppError::validation(format!("invalid JSON body: {e}")))
    }
}

/// Query parameters, parsed leniently into strings; each handler validates what it reads.
pub struct Params(pub HashMap<String, String>);

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, AppError> {
        axum::extract::Query::<HashMap<String, String>>::try_from_uri(&parts.uri)
            .map(|q| Params(q.0))
            .map_err(|_| AppError::validation("malformed query string"))
    }
}

impl Params {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .get(key)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// A parameter as [`paging`] reads it (absent when empty).
    pub fn raw(&self, key: &str) -> Option<Raw<'_>> {
        self.get(key).map(Raw::Text)
    }

    /// The `limit` of a list with these bounds (see [`paging::limit`]).
    pub fn limit(&self, bounds: paging::Bounds) -> Result<usize, AppError> {
        paging::limit(self.raw("limit"), bounds)
    }
}
