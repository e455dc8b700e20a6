//! Where webhooks go and how hard they are pushed: the `WEBHOOK_*` settings (one endpoint from
//! the environment, several from `WEBHOOKS_FILE`), parsed and checked once at boot.
//!
//! `WEBHOOKS_FILE` is JSON (docs/webhooks.md):
//!
//! ```json
//! { "endpoints": [
//!   { "name": "crm", "url": "https://crm.example.com/hooks",
//!     "secrets": ["whsec_...", "whsec_... (the old one, during a rotation)"],
//!     "events": ["message.created", "chat.unread"] }
//! ] }
//! ```

use serde::Deserialize;

use super::signing::SigningKey;
pub use crate::config::WebhookSettings;

/// Every webhook event type (PROTOCOL.md, "Webhooks"): what an endpoint's filter may name.
pub const EVENT_TYPES: &[&str] = &[
    "message.created",
    "message.delivered",
    "message.read",
    "chat.created",
    "chat.updated",
    "chat.unread",
    "report.created",
    "report.read",
    "user.online",
    "user.offline",
];

/// One endpoint, checked.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// Its `endpoint` metric label and its key in the outbox (`default` for `WEBHOOK_URL`).
    pub name: String,
    pub url: reqwest::Url,
    /// Every current secret: each request carries one signature per secret.
    pub keys: Vec<SigningKey>,
    /// The event types it gets; `None`: all.
    pub events: Option<Vec<String>>,
}

impl Endpoint {
    /// Does this endpoint get events of type `kind`?
    pub fn wants(&self, kind: &str) -> bool {
        self.events
            .as_ref()
            .is_none_or(|e| e.iter().any(|k| k == kind))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    endpoints: Vec<FileEndpoint>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileEndpoint {
    name: String,
    url: String,
    secrets: Vec<String>,
    #[serde(default)]
    events: Option<Vec<String>>,
}

/// The configured endpoints (none: webhooks are off); a clear error for a bad URL, secret,
/// event type, duplicate name or file.
pub fn endpoints(s: &WebhookSettings) -> Result<Vec<Endpoint>, String> {
    let mut out = Vec::new();
    // An empty WEBHOOK_URL (a compose file's `${WEBHOOK_URL:-}`) is no endpoint.
    if let Some(url) = s.url.as_deref().filter(|u| !u.is_empty()) {
        let secret = s
            .secret
            .as_deref()
            .ok_or("WEBHOOK_URL is set but WEBHOOK_SECRET is not")?;
        let secrets: Vec<String> = secret.split_whitespace().map(str::to_owned).collect();
        let events: Vec<String> = s
            .events
            .split(',')
            .map(|e| e.trim().to_owned())
            .filter(|e| !e.is_empty())
            .collect();
        out.push(endpoint("default", url, &secrets, Some(events))?);
    }
    if let Some(path) = &s.file {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("WEBHOOKS_FILE {}: {e}", path.display()))?;
        let file: File = serde_json::from_str(&text)
            .map_err(|e| format!("WEBHOOKS_FILE {}: {e}", path.display()))?;
        for e in file.endpoints {
            out.push(endpoint(&e.name, &e.url, &e.secrets, e.events)?);
        }
    }
    for (i, e) in out.iter().enumerate() {
        if out[..i].iter().any(|o| o.name == e.name) {
            return Err(format!("webhook endpoint name {:?} is used twice", e.name));
        }
    }
    Ok(out)
}

fn endpoint(
    name: &str,
    url: &str,
    secrets: &[String],
    events: Option<Vec<String>>,
) -> Result<Endpoint, String> {
    let valid_name = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !valid_name {
        return Err(format!(
            "webhook endpoint name {name:?}: 1 to 64 letters, digits, '-' or '_'"
        ));
    }
    let parsed = reqwest::Url::parse(url)
        .map_err(|e| format!("webhook endpoint {name}: URL {url:?}: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!(
            "webhook endpoint {name}: URL must be http or https"
        ));
    }
    if secrets.is_empty() {
        return Err(format!("webhook endpoint {name}: no secret"));
    }
    let keys = secrets
        .iter()
        .map(|s| SigningKey::parse(s).map_err(|e| format!("webhook endpoint {name}: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    let events = match events {
        None => None,
        Some(list) if list.iter().any(|e| e == "*") => None,
        Some(list) => {
            if let Some(bad) = list.iter().find(|e| !EVENT_TYPES.contains(&e.as_str())) {
                return Err(format!(
                    "webhook endpoint {name}: unknown event type {bad:?} (known: {})",
                    EVENT_TYPES.join(", ")
                ));
            }
            if list.is_empty() {
                return Err(format!("webhook endpoint {name}: no event types"));
            }
            Some(list)
        }
    };
    Ok(Endpoint {
        name: name.to_owned(),
        url: parsed,
        keys,
        events,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> WebhookSettings {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct T {
            #[command(flatten)]
            w: WebhookSettings,
        }
        T::parse_from(["t"]).w
    }

    #[test]
    fn one_endpoint_from_the_environment_with_a_filter() {
        let mut s = settings();
        s.url = Some("http://127.0.0.1:9/hook".into());
        s.secret = Some("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into());
        s.events = "message.created, chat.unread".into();
        let e = endpoints(&s).unwrap();
        assert_eq!(e.len(), 1);
        assert!(e[0].wants("chat.unread"));
        assert!(!e[0].wants("user.online"));
    }

    #[test]
    fn bad_settings_are_refused_with_a_reason() {
        let mut s = settings();
        s.url = Some("http://127.0.0.1:9/hook".into());
        assert!(endpoints(&s).unwrap_err().contains("WEBHOOK_SECRET"));
        s.secret = Some("not-a-secret".into());
        assert!(endpoints(&s).unwrap_err().contains("whsec_"));
        s.secret = Some("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into());
        s.events = "message.sent".into();
        assert!(endpoints(&s).unwrap_err().contains("unknown event type"));
        s.events = "*".into();
        s.url = Some("ftp://x".into());
        assert!(endpoints(&s).unwrap_err().contains("http"));
    }
}
