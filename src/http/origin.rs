//! `CORS_ORIGINS` for the Socket.IO transports: a WebSocket upgrade or long-polling request
//! whose `Origin` header names an origin not allowed is refused (`403`) before the Engine.IO
//! layer sees it. Browsers enforce CORS on REST and polling responses, but not on a WebSocket
//! upgrade, so without this any page could open a socket (tokens travel in the CONNECT
//! packet's `auth`, not in cookies: defence in depth). Requests with no `Origin` header (back-end
//! services, native clients) pass.
//!
//! In development, the development console's own origin passes too (an `Origin` that is this
//! very request's loopback `Host`, as the console page at `http://localhost:5001/` sends), so
//! the README's first minutes work with no settings: nothing wider, and never in production.

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
/// is left to the CORS layer). `console` is true in development, where the console's own
/// origin passes. No allocation on the way through.
pub async fn check(allowed: AllowedOrigins, console: bool, req: Request, next: Next) -> Response {
    if req.uri().path().starts_with("/socket.io") {
        let origin = req.headers().get(header::ORIGIN);
        let own_console = console && is_console_origin(origin, req.headers().get(header::HOST));
        if !allowed.allows(origin) && !own_console {
            return AppError::forbidden("this origin is not allowed (CORS_ORIGINS)")
                .into_response();
        }
    }
    next.run(req).await
}

/// Is `origin` the console page's own: `http://` or `https://` followed by this request's
/// `Host`, a loopback name? (A page served by this node to a browser on this machine.)
fn is_console_origin(origin: Option<&HeaderValue>, host: Option<&HeaderValue>) -> bool {
    let (Some(origin), Some(host)) = (origin, host) else {
        return false;
    };
    let (Ok(origin), Ok(host)) = (origin.to_str(), host.to_str()) else {
        return false;
    };
    let Some(rest) = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
    else {
        return false;
    };
    rest.eq_ignore_ascii_case(host) && crate::http::console::is_loopback_host(host)
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

    #[test]
    fn the_console_origin_is_its_own_loopback_host_only() {
        let v = HeaderValue::from_static;
        let own = |o, h| is_console_origin(Some(&v(o)), Some(&v(h)));
        assert!(own("http://localhost:5001", "localhost:5001"));
        assert!(own("http://127.0.0.1:5001", "127.0.0.1:5001"));
        assert!(own("http://[::1]:5001", "[::1]:5001"));
        // Another port, another host, a non-loopback host (DNS rebinding), or no Host.
        assert!(!own("http://localhost:3000", "localhost:5001"));
        assert!(!own("http://evil.example:5001", "localhost:5001"));
        assert!(!own("http://evil.example:5001", "evil.example:5001"));
        assert!(!own("http://192.168.1.5:5001", "192.168.1.5:5001"));
        assert!(!is_console_origin(Some(&v("http://localhost:5001")), None));
    }
}
