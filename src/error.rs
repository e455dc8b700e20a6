//! The one table of error codes: each code's wire name, HTTP status and metric outcome label,
//! shared by HTTP responses, socket acks and [`crate::metrics`].
//!
//! Every failure a client can see is an [`AppError`]: a stable [`ErrorCode`] and a message that is
//! safe to show. Internal causes go to the logs, never to the client.
//!
//! This module depends on no other module of the crate, so everything can use it: lower layers
//! turn their own errors into an [`AppError`] where they are defined (the store's in
//! [`crate::store`]).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// Writes [`ErrorCode`] and everything derived from it from one table, so a code's wire name,
/// HTTP status and metric outcome cannot drift apart.
macro_rules! error_codes {
    ($($(#[$doc:meta])* $code:ident => $wire:literal, $status:ident, $outcome:literal;)*) => {
        /// The stable error codes of PROTOCOL.md.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum ErrorCode {
            $($(#[$doc])* $code,)*
        }

        impl ErrorCode {
            /// Every code, in table order (`code as usize` indexes it).
            pub const ALL: &[ErrorCode] = &[$(Self::$code,)*];

            /// The code as it appears on the wire.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Self::$code => $wire,)*
                }
            }

            /// The HTTP status that goes with the code.
            pub const fn status(self) -> StatusCode {
                match self {
                    $(Self::$code => StatusCode::$status,)*
                }
            }

            /// The `outcome` label a failure with this code is counted under (the code in lower
            /// case; a success is `ok`).
            pub const fn outcome(self) -> &'static str {
                match self {
                    $(Self::$code => $outcome,)*
                }
            }
        }
    };
}

error_codes! {
    /// No valid token.
    Unauthorized => "UNAUTHORIZED", UNAUTHORIZED, "unauthorized";
    /// A valid caller who may not do this.
    Forbidden => "FORBIDDEN", FORBIDDEN, "forbidden";
    /// The input breaks a rule; nothing changed.
    Validation => "VALIDATION", BAD_REQUEST, "validation";
    /// The thing named does not exist.
    NotFound => "NOT_FOUND", NOT_FOUND, "not_found";
    /// Too many events or requests: slow down.
    RateLimited => "RATE_LIMITED", TOO_MANY_REQUESTS, "rate_limited";
    /// A body or file over its limit.
    PayloadTooLarge => "PAYLOAD_TOO_LARGE", PAYLOAD_TOO_LARGE, "payload_too_large";
    /// A backing service cannot be reached, or the node drains; nothing was saved.
    Unavailable => "UNAVAILABLE", SERVICE_UNAVAILABLE, "unavailable";
    /// A bug or corrupt data; the cause is in the logs.
    Internal => "INTERNAL", INTERNAL_SERVER_ERROR, "internal";
}

impl Serialize for ErrorCode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// A failure a client is told about.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{code:?}: {message}")]
pub struct AppError {
    pub code: ErrorCode,
    pub message: String,
}

/// `{ code, message }`, the body of every error on the wire.
#[derive(Serialize)]
pub struct ErrorBody<'a> {
    pub code: &'static str,
    pub message: &'a str,
}

impl AppError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
    pub fn validation(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Validation, message)
    }
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Forbidden, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, message)
    }
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unauthorized, message)
    }

    /// The `{ code, message }` object.
    pub fn body(&self) -> ErrorBody<'_> {
        ErrorBody {
            code: self.code.as_str(),
            message: &self.message,
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        #[derive(Serialize)]
        struct Envelope<'a> {
            error: ErrorBody<'a>,
        }
        let status = self.code.status();
        (status, axum::Json(Envelope { error: self.body() })).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_in_step_with_itself() {
        for (i, code) in ErrorCode::ALL.iter().enumerate() {
            assert_eq!(*code as usize, i, "ALL is in declaration order");
            assert_eq!(code.outcome(), code.as_str().to_lowercase());
            assert_eq!(
                serde_json::to_value(code).unwrap(),
                serde_json::json!(code.as_str())
            );
        }
    }
}
