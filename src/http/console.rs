//! The development console: `GET /` serves a small page (plain HTML, JavaScript and CSS in
//! `src/http/console/`, embedded in the binary, no build step) where a newcomer picks a user or a
//! staff identity, chats, sends report messages and watches presence, against this node.
//!
//! Only with `SWITCHBOARD_ENV=development`: in production every route here answers `404`, as
//! any unknown path does, and no token is ever minted over HTTP. Even in development a token is
//! minted only for a request that comes straight from a loopback address (the TCP peer, not a
//! header), was not forwarded by a proxy, names a loopback host and, when the browser says
//! where it comes from, comes from the console's own origin: a development node bound to
//! `0.0.0.0` must not hand staff tokens to its network, nor to a web page that a developer's
//! browser happens to open (a cross-site `fetch`, or DNS rebinding onto `localhost`).

use std::net::SocketAddr;
use std::time::Duration;

use axum::Extension;
use axum::Router;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};

use crate::config::Environment;
use crate::connections::PeerAddr;
use crate::domain::Role;
use crate::error::AppError;
use crate::http::JsonBody;
use crate::state::AppState;

/// The console's files, embedded at build time.
const INDEX_HTML: &str = include_str!("console/index.html");
const CONSOLE_JS: &str = include_str!("console/console.js");
const CONSOLE_CSS: &str = include_str!("console/console.css");
/// socket.io-client's browser bundle, 4.8.1 (MIT; see `console/socket.io.LICENSE`).
const SOCKET_IO_JS: &str = include_str!("console/socket.io.min.js");

/// How long a console token lives: a working day.
const TOKEN_TTL: Duration = Duration::from_secs(12 * 3600);

/// The console's routes (each answers `404` outside development).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(page))
        .route("/console/console.js", get(script))
        .route("/console/console.css", get(style))
        .route("/console/socket.io.min.js", get(socket_io))
        .route("/console/token", post(mint))
}

/// `404` unless this node runs in development.
fn development_only(state: &AppState) -> Result<(), AppError> {
    if state.config.environment == Environment::Development {
        Ok(())
    } else {
        Err(AppError::not_found("no such route"))
    }
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

async fn page(State(state): State<AppState>) -> Result<Response, AppError> {
    development_only(&state)?;
    let mut res = file("text/html; charset=utf-8", INDEX_HTML);
    // The page loads only its own files and talks only to this node.
    res.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self' ws: wss:; \
             img-src 'self' data:; form-action 'none'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    Ok(res)
}

async fn script(State(state): State<AppState>) -> Result<Response, AppError> {
    development_only(&state)?;
    Ok(file("text/javascript; charset=utf-8", CONSOLE_JS))
}

async fn style(State(state): State<AppState>) -> Result<Response, AppError> {
    development_only(&state)?;
    Ok(file("text/css; charset=utf-8", CONSOLE_CSS))
}

async fn socket_io(State(state): State<AppState>) -> Result<Response, AppError> {
    development_only(&state)?;
    Ok(file("text/javascript; charset=utf-8", SOCKET_IO_JS))
}

/// `POST /console/token` body: who the newcomer wants to be.
#[derive(Deserialize)]
struct Identity {
    name: String,
    role: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Minted {
    token: String,
    user: MintedUser,
    /// The node that minted it (and that the console's socket reaches).
    node: String,
}

#[derive(Serialize)]
struct MintedUser {
    id: String,
    name: String,
    role: &'static str,
}

/// Mints a token for a console identity: development only, loopback only (see the file header).
async fn mint(
    State(state): State<AppState>,
    connect_info: Option<Extension<ConnectInfo<PeerAddr>>>,
    headers: HeaderMap,
    JsonBody(identity): JsonBody<Identity>,
) -> Result<Response, AppError> {
    development_only(&state)?;
    may_mint(
        connect_info.map(|Extension(ConnectInfo(PeerAddr(peer)))| peer),
        &headers,
    )?;
    let role = match identity.role.as_str() {
        "user" => Role::User,
        "admin" => Role::Admin,
        _ => return Err(AppError::validation("role must be user or admin")),
    };
    let name = identity.name.trim();
    let id = user_id(name).ok_or_else(|| {
        AppError::validation("name must be 1 to 40 characters with at least one letter or digit")
    })?;
    let token = state
        .keys
        .verifier
        .issue(&id, role, Some(name), TOKEN_TTL)
        .ok_or_else(|| {
            AppError::not_found("the console mints tokens only with an HS256/384/512 JWT secret")
        })?;
    tracing::info!(user_id = %id, role = role.as_str(), "console token minted");
    Ok(axum::Json(Minted {
        token,
        user: MintedUser {
            id,
            name: name.to_owned(),
            role: role.as_str(),
        },
        node: state.node_id.clone(),
    })
    .into_response())
}

/// The user id for a console name: its letters and digits, lowercased, other runs as `-`
/// ("Alice Smith" is `alice-smith`), so two windows that type the same name are one user.
fn user_id(name: &str) -> Option<String> {
    if name.is_empty() || name.chars().count() > 40 || name.chars().any(char::is_control) {
        return None;
    }
    let mut id = String::new();
    for c in name.chars().flat_map(char::to_lowercase) {
        if c.is_alphanumeric() {
            id.push(c);
        } else if !id.is_empty() && !id.ends_with('-') {
            id.push('-');
        }
    }
    let id = id.trim_end_matches('-').to_owned();
    (!id.is_empty()).then_some(id)
}

/// Headers a proxy adds: a request that carries one came through something else, so its TCP
/// peer says nothing about who sent it.
const FORWARDING_HEADERS: [&str; 4] = ["forwarded", "x-forwarded-for", "x-real-ip", "via"];

/// Is this request one a token may be minted for? Its TCP peer is a loopback address, no proxy
/// forwarded it, its `Host` is a loopback name, and its `Origin` (sent by browsers with every
/// `POST`) is that same host: the console's own page.
fn may_mint(peer: Option<SocketAddr>, headers: &HeaderMap) -> Result<(), AppError> {
    let refuse = |why: &str| {
        Err(AppError::forbidden(format!(
            "the console mints tokens only for requests from this machine: {why}"
        )))
    };
    match peer {
        Some(p) if p.ip().is_loopback() || is_mapped_loopback(p) => {}
        Some(_) => return refuse("the request came from another address"),
        None => return refuse("the peer address is unknown"),
    }
    if FORWARDING_HEADERS.iter().any(|h| headers.contains_key(*h)) {
        return refuse("the request was forwarded by a proxy");
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    if !is_loopback_host(host) {
        return refuse("the Host is not a loopback name");
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let own = ["http://", "https://"]
            .iter()
            .any(|scheme| origin.to_str().ok() == Some(&format!("{scheme}{host}")));
        if !own {
            return refuse("the request came from another origin");
        }
    }
    Ok(())
}

/// `::ffff:127.0.0.1` (a dual-stack listener's view of an IPv4 loopback peer).
fn is_mapped_loopback(peer: SocketAddr) -> bool {
    match peer.ip() {
        std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()),
        std::net::IpAddr::V4(_) => false,
    }
}

/// `localhost`, `127.x.y.z` or `[::1]`, with or without a port.
fn is_loopback_host(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split_once(']').map_or("", |(h, _)| h)
    } else {
        host.rsplit_once(':').map_or(host, |(h, _)| h)
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn peer(s: &str) -> Option<SocketAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn a_loopback_request_from_the_console_page_may_mint() {
        let h = headers(&[
            ("host", "localhost:5001"),
            ("origin", "http://localhost:5001"),
        ]);
        assert!(may_mint(peer("127.0.0.1:40000"), &h).is_ok());
        assert!(may_mint(peer("[::1]:40000"), &h).is_ok());
        assert!(may_mint(peer("[::ffff:127.0.0.1]:40000"), &h).is_ok());
        let h = headers(&[("host", "127.0.0.1:5001")]);
        assert!(may_mint(peer("127.0.0.1:40000"), &h).is_ok());
    }

    #[test]
    fn a_request_from_another_address_may_not_mint() {
        let h = headers(&[("host", "localhost:5001")]);
        assert!(may_mint(peer("192.168.1.20:40000"), &h).is_err());
        assert!(may_mint(peer("[2001:db8::1]:40000"), &h).is_err());
        assert!(may_mint(peer("[::ffff:10.0.0.1]:40000"), &h).is_err());
        assert!(may_mint(None, &h).is_err());
    }

    #[test]
    fn a_forwarded_or_foreign_request_may_not_mint() {
        let loopback = peer("127.0.0.1:40000");
        for forwarded in FORWARDING_HEADERS {
            let h = headers(&[("host", "localhost:5001"), (forwarded, "203.0.113.9")]);
            assert!(may_mint(loopback, &h).is_err(), "{forwarded}");
        }
        let rebound = headers(&[
            ("host", "evil.example:5001"),
            ("origin", "http://evil.example:5001"),
        ]);
        assert!(may_mint(loopback, &rebound).is_err());
        let cross_site = headers(&[
            ("host", "localhost:5001"),
            ("origin", "http://evil.example"),
        ]);
        assert!(may_mint(loopback, &cross_site).is_err());
        let no_host = headers(&[]);
        assert!(may_mint(loopback, &no_host).is_err());
    }

    #[test]
    fn names_become_stable_ids() {
        assert_eq!(user_id("Alice").as_deref(), Some("alice"));
        assert_eq!(user_id("Alice  Smith!").as_deref(), Some("alice-smith"));
        assert_eq!(user_id("Zoë").as_deref(), Some("zoë"));
        assert_eq!(user_id("!!!"), None);
        assert_eq!(user_id(""), None);
        assert_eq!(user_id(&"a".repeat(41)), None);
    }
}
