//! How the Redis recovery backend makes a call: bounded in time, its errors as
//! [`BackendError`]s, its text answers read one way.

use std::time::Duration;

use fred::prelude::Value;

use super::super::backend::BackendError;

/// Upper bound on any one call, on top of the client's own command timeout.
const CALL_TIMEOUT: Duration = Duration::from_secs(3);

pub(super) fn failed(e: impl std::fmt::Display) -> BackendError {
    BackendError(e.to_string())
}

/// `call`, given up after [`CALL_TIMEOUT`].
pub(super) async fn bounded<T>(
    call: impl Future<Output = Result<T, fred::error::Error>>,
) -> Result<T, BackendError> {
    match tokio::time::timeout(CALL_TIMEOUT, call).await {
        Ok(r) => r.map_err(failed),
        Err(_) => Err(BackendError("recovery call timed out".into())),
    }
}

/// A bulk or simple string answer as text.
pub(super) fn text(v: &Value) -> Option<String> {
    v.as_string()
}
