//! The development console: `GET /` serves a small page (plain HTML, JavaScript and CSS in
//! `src/http/console/`, embedded in the binary, no build step) where a newcomer picks a user, a
//! staff or a superadmin identity, chats, sends report messages, watches presence, and works the
//! support desk (`desk.js`: the live chat list, availability, assignment, removing a user, the
//! audit log), against this node.
//!
//! Only with `SWITCHBOARD_ENV=development`: in production these routes are not mounted at all
//! (every path here is the router's plain `404`, answered before any body is read), and no token
//! is ever minted over HTTP.
//!
//! In development a token is minted only for a request that carries the **console code**: a
//! random code the node prints in its log at start-up (and keeps in `DATA_DIR/console-code`,
//! `0600`, readable by the account that runs the node and nobody else), which the person at
//! the console types into the page. The address a request comes from proves nothing on its
//! own: a same-host nginx `proxy_pass`, a TLS terminator, socat or an ssh tunnel all connect
//! from loopback, and so does every other account on the machine. After
//! [`MAX_WRONG_CODES`] wrong codes the console mints nothing until the node restarts (with a new
//! code), so the code cannot be guessed. As defence in depth the request must also come
//! straight from a loopback peer, carry no forwarding header (`Forwarded`, `Via`, any
//! `X-Forwarded-*`, `X-Envoy-*`, `X-Real-IP`...), name a loopback host and, when the browser
//! says where it comes from, come from the console's own origin (no cross-site `fetch`, no DNS
//! rebinding onto `localhost`).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use axum::Extension;
use axum::Router;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};

use crate::connections::PeerAddr;
use crate::domain::Role;
use crate::error::AppError;
use crate::http::JsonBody;
use crate::state::AppState;

/// The console's files, embedded at build time.
const INDEX_HTML: &str = include_str!("console/index.html");
const CONSOLE_JS: &str = include_str!("console/console.js");
/// The support desk's views (live chat list details, availability, removals, audit log).
const DESK_JS: &str = include_str!("console/desk.js");
const CONSOLE_CSS: &str = include_str!("console/console.css");
/// socket.io-client's browser bundle, 4.8.1 (MIT; see `console/socket.io.LICENSE`).
const SOCKET_IO_JS: &str = include_str!("console/socket.io.min.js");

/// How long a console token lives: a working day.
const TOKEN_TTL: Duration = Duration::from_secs(12 * 3600);

/// Wrong console codes after which the console mints nothing until the node restarts: with a
/// code of [`CODE_LEN`] characters from [`CODE_ALPHABET`] (about 59 bits), ten guesses are
/// nothing.
pub const MAX_WRONG_CODES: u32 = 10;
/// Characters of a console code (no `0`/`O`, `1`/`I`/`L`: it is read off a terminal and typed).
const CODE_ALPHABET: &[u8] = b"ABCDEFGHJKMNPQRSTUVWXYZ23456789";
/// Length of a console code, shown in groups of four.
const CODE_LEN: usize = 12;

/// What only the person at the console has: the code this node printed at start-up.
pub struct ConsoleGate {
    /// The code, without its group separators.
    code: String,
    /// Wrong codes typed since start-up; at [`MAX_WRONG_CODES`] the gate stays shut.
    wrong: AtomicU32,
}

impl ConsoleGate {
    /// A gate with a fresh random code, logged and written to `DATA_DIR/console-code` (`0600`)
    /// so the person who started the node can read it back.
    pub fn start(data_dir: &Path) -> Arc<Self> {
        let code: String = (0..CODE_LEN)
            .map(|_| {
                let i = rand::random_range(0..CODE_ALPHABET.len());
                char::from(CODE_ALPHABET[i])
            })
            .collect();
        let gate = Self::with_code(&code);
        let shown = gate.shown();
        let path = data_dir.join("console-code");
        let kept = crate::private_files::ensure_dir(data_dir)
            .and_then(|()| crate::private_files::write_file(&path, shown.as_bytes()));
        if let Err(e) = kept {
            tracing::warn!(path = %path.display(), error = %e, "could not keep the console code");
        }
        tracing::info!(
            console_code = %shown,
            path = %path.display(),
            "development console: open this node's address in a browser and enter the console code"
        );
        Arc::new(gate)
    }

    fn with_code(code: &str) -> Self {
        Self {
            code: code.to_owned(),
            wrong: AtomicU32::new(0),
        }
    }

    /// The code as printed: `ABCD-EFGH-JKMN`.
    fn shown(&self) -> String {
        let groups: Vec<&str> = self
            .code
            .as_bytes()
            .chunks(4)
            .map(|g| std::str::from_utf8(g).expect("ASCII"))
            .collect();
        groups.join("-")
    }

    /// Accepts the code as typed (any case, with or without separators and spaces).
    fn check(&self, typed: &str) -> Result<(), AppError> {
        if self.wrong.load(Ordering::Relaxed) >= MAX_WRONG_CODES {
            return Err(AppError::forbidden(
                "too many wrong console codes: restart the node, which prints a new one",
            ));
        }
        let typed: Vec<u8> = typed
            .bytes()
            .filter(|b| !matches!(b, b'-' | b' '))
            .map(|b| b.to_ascii_uppercase())
            .collect();
        // Constant time over the code's length: the comparison tells nothing about a prefix.
        let same = typed.len() == self.code.len()
            && typed
                .iter()
                .zip(self.code.as_bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0;
        if same {
            return Ok(());
        }
        let wrong = self.wrong.fetch_add(1, Ordering::Relaxed) + 1;
        tracing::warn!(wrong, "a wrong console code was typed");
        Err(AppError::forbidden(
            "wrong console code: the node prints it in its log at start-up (and keeps it in DATA_DIR/console-code)",
        ))
    }
}

/// The console's routes; `app` mounts them only in development.
pub fn routes(gate: Arc<ConsoleGate>) -> Router<AppState> {
    Router::new()
        .route("/", get(page))
        .route("/console/console.js", get(script))
        .route("/console/desk.js", get(desk_script))
        .route("/console/console.css", get(style))
        .route("/console/socket.io.min.js", get(socket_io))
        .route("/console/token", post(mint))
        .layer(Extension(gate))
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
    let mut res = file("text/html; charset=utf-8", INDEX_HTML);
    // The page loads only its own files and talks only to this node.
    res.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self' ws: wss:; \
             img-src 'self' data:; form-action 'none'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    res
}

async fn script() -> Response {
    file("text/javascript; charset=utf-8", CONSOLE_JS)
}

async fn desk_script() -> Response {
    file("text/javascript; charset=utf-8", DESK_JS)
}

async fn style() -> Response {
    file("text/css; charset=utf-8", CONSOLE_CSS)
}

async fn socket_io() -> Response {
    file("text/javascript; charset=utf-8", SOCKET_IO_JS)
}

/// `POST /console/token` body: who the newcomer wants to be.
#[derive(Deserialize)]
struct Identity {
    name: String,
    role: String,
    /// The console code the node printed at start-up.
    #[serde(default)]
    code: String,
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

/// Mints a token for a console identity: with the console code, from this machine (see the
/// file header).
async fn mint(
    State(state): State<AppState>,
    Extension(gate): Extension<Arc<ConsoleGate>>,
    connect_info: Option<Extension<ConnectInfo<PeerAddr>>>,
    headers: HeaderMap,
    JsonBody(identity): JsonBody<Identity>,
) -> Result<Response, AppError> {
    may_mint(
        connect_info.map(|Extension(ConnectInfo(PeerAddr(peer)))| peer),
        &headers,
    )?;
    gate.check(&identity.code)?;
    let role = match identity.role.as_str() {
        "user" => Role::User,
        "admin" => Role::Admin,
        "superadmin" => Role::Superadmin,
        _ => {
            return Err(AppError::validation(
                "role must be user, admin or superadmin",
            ));
        }
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
/// peer says nothing about who sent it. Besides these names, any `X-Forwarded-*` or
/// `X-Envoy-*` header counts (see [`is_forwarding_header`]).
const FORWARDING_HEADERS: [&str; 7] = [
    "forwarded",
    "via",
    "x-real-ip",
    "x-client-ip",
    "true-client-ip",
    "x-original-forwarded-for",
    "cf-connecting-ip",
];

/// Does this header say the request came through a proxy? (Header names are lowercase here.)
fn is_forwarding_header(name: &str) -> bool {
    FORWARDING_HEADERS.contains(&name)
        || name.starts_with("x-forwarded-")
        || name.starts_with("x-envoy-")
}

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
    if headers.keys().any(|h| is_forwarding_header(h.as_str())) {
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
pub fn is_loopback_host(host: &str) -> bool {
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
        let proxies = FORWARDING_HEADERS.iter().copied().chain([
            "x-forwarded-for",
            "x-forwarded-host",
            "x-forwarded-proto",
            "x-envoy-external-address",
            "x-envoy-original-path",
        ]);
        for forwarded in proxies {
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
    fn only_the_printed_code_opens_the_gate_and_ten_wrong_ones_shut_it() {
        let gate = ConsoleGate::with_code("ABCDEFGHJKMN");
        assert_eq!(gate.shown(), "ABCD-EFGH-JKMN");
        assert!(gate.check("ABCD-EFGH-JKMN").is_ok());
        assert!(gate.check("abcd efgh jkmn").is_ok());
        assert!(gate.check("").is_err());
        assert!(gate.check("ABCD-EFGH-JKMP").is_err());
        assert!(gate.check("ABCD-EFGH-JKMNA").is_err());
        for _ in 2..MAX_WRONG_CODES {
            assert!(gate.check("WRONG").is_err());
        }
        // Shut: even the right code is refused now.
        assert!(gate.check("ABCD-EFGH-JKMN").is_err());
    }

    #[test]
    fn a_generated_code_is_random_and_kept_private() {
        let dir = tempfile::tempdir().unwrap();
        let first = ConsoleGate::start(dir.path());
        let kept = std::fs::read_to_string(dir.path().join("console-code")).unwrap();
        assert_eq!(kept, first.shown());
        assert!(first.check(&kept).is_ok());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("console-code"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "{mode:o}");
        }
        let second = ConsoleGate::start(dir.path());
        assert_ne!(first.code, second.code);
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
