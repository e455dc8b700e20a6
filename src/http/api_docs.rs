//! The development console's rendered view of `GET /api/openapi.json`: `GET /console/api`, a
//! page that lists every operation of the REST API by tag, with its parameters, body and
//! answers, read from the document the node serves (so it shows what this build answers).
//!
//! Plain HTML and JavaScript embedded in the binary (`src/http/api_docs/`), no build step and
//! nothing fetched from elsewhere; mounted only in development, like the console that links it.

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::state::AppState;

const PAGE_HTML: &str = include_str!("api_docs/index.html");
const PAGE_JS: &str = include_str!("api_docs/api.js");

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/console/api", get(page))
        .route("/console/api.js", get(script))
}

fn file(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
        ],
        body,
    )
        .into_response()
}

async fn page() -> Response {
    let mut res = file("text/html; charset=utf-8", PAGE_HTML);
    // The page loads only its own script and reads only this node's document.
    res.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
             connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    res
}

async fn script() -> Response {
    file("text/javascript; charset=utf-8", PAGE_JS)
}
