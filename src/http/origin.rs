//! `CORS_ORIGINS` for the Socket.IO transports: a WebSocket upgrade or long-polling request
//! whose `Origin` header names an origin not allowed is refused (`403`) before the Engine.IO
//! layer sees it. Browsers enforce CORS on REST and polling responses, but not on a WebSocket
//! upgrade, so without this any page could open a socket (tokens travel in the CONNECT
//! packet's `auth`, not in cookies: defence in depth). Requests with no `Origin` header (back-end
//! services, native clients) pass.

use std::sync::Arc;

use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::AppError;

/// The origins `CORS_ORIGINS` allows, parsed once at boot.
#[derive(Clone)]
pub enum AllowedOrigins {
    /// `*`: every origin.
    Any,
    /// A list of exact origins (`scheme://host[:port]`).
    List(Arc<[HeaderValue]>),
}

impl AllowedOrigins {
    /// Parses the comma-separated setting; entries that are not valid header values are
    /// dropped (they could never match).
    pub fn parse(setting: &str) -> Self {
        if setting.trim() == "*" {
            return AllowedOrigins::Any;
        }
        AllowedOrigins::List(
            setting
                .split(',')
                .map(str::trim)
                .filter(|o| !o.is_empty())
                .filter_map(|o| HeaderValue::from_str(o).ok())
                .collect(),
        )
    }

    /// Is a request with this `Origin` header (or none) allowed?
    pub fn allows(&self, origin: Option<&HeaderValue>) -> bool {
        match (self, origin) {
            (_, None) | (AllowedOrigins::Any, _) => true,
            (AllowedOrigins::List(list), Some(o)) => list
                .iter()
                .any(|allowed| allowed.as_bytes().eq_ignore_ascii_case(o.as_bytes())),
        }
    }
}

/// `axum::middleware::from_fn` body: checks the `Origin` of `/socket.io` requests only (REST
/// is left to the CORS layer). No allocation on the way through.
pub async fn check(allowed: AllowedOrigins, req: Request, next: Next) -> Response {
    if req.uri().path().starts_with("/socket.io")
        && !allowed.allows(req.headers().get(header::ORIGIN))
    {
        return AppError::forbidden("this origin is not allowed (CORS_ORIGINS)").into_response();
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listed_origin_or_none_passes_and_any_other_is_refused() {
        let allowed = AllowedOrigins::parse("http://localhost:3000, https://app.example");
        let origin = |o: &'static str| HeaderValue::from_static(o);
        assert!(allowed.allows(None));
        assert!(allowed.allows(Some(&origin("https://app.example"))));
        assert!(!allowed.allows(Some(&origin("http://evil.example"))));
        assert!(!allowed.allows(Some(&origin("https://app.example.evil"))));
        assert!(AllowedOrigins::parse("*").allows(Some(&origin("http://evil.example"))));
    }
}
