//! [`Config::validate`]: the settings checked together, once, at boot; a setting that cannot
//! work stops the node with a [`ConfigError`] naming it.

use std::time::Duration;

use crate::config::{Config, ConfigError, Environment, MAX_JWT_LEEWAY_SECS};

impl Config {
    /// Checks the settings together, once, at boot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let fail = |m: &str| Err(ConfigError(m.to_owned()));
        if self.rate_limit_per_sec == 0 {
            return fail("RATE_LIMIT_PER_SEC must be at least 1");
        }
        self.assignment.validate().map_err(ConfigError)?;
        if self.max_sockets_per_user == 0 {
            return fail("MAX_SOCKETS_PER_USER must be at least 1");
        }
        if self.heartbeat_interval.is_zero() || self.heartbeat_interval >= self.presence_ttl {
            return fail("HEARTBEAT_INTERVAL_SECS must be at least 1 and below PRESENCE_TTL_SECS");
        }
        if self.page_max_bytes < 4096 {
            return fail("PAGE_MAX_BYTES must be at least 4096");
        }
        if self.recovery_resumes_per_min == 0 {
            return fail("RECOVERY_RESUMES_PER_MIN must be at least 1");
        }
        if self.recovery_log_max_bytes < 65_536 || self.recovery_tail_max_bytes < 65_536 {
            return fail(
                "RECOVERY_LOG_MAX_BYTES and RECOVERY_TAIL_MAX_BYTES must be at least 65536",
            );
        }
        if self.recovery_window > Duration::from_secs(24 * 3600) {
            return fail("RECOVERY_WINDOW_SECS must be at most 86400");
        }
        if self.offline_grace > Duration::from_secs(3600) {
            return fail("OFFLINE_GRACE_SECS must be at most 3600");
        }
        if self.jwt_leeway_secs > MAX_JWT_LEEWAY_SECS {
            return fail("JWT_LEEWAY_SECS must be at most 30");
        }
        if self.max_connections == Some(0) || self.max_handshakes_per_sec == Some(0) {
            return fail("MAX_CONNECTIONS and MAX_HANDSHAKES_PER_SEC must be at least 1 when set");
        }
        if !(1..=3600).contains(&self.request_timeout.as_secs()) {
            return fail("REQUEST_TIMEOUT_SECS must be between 1 and 3600");
        }
        if !(1..=3600).contains(&self.upload_timeout.as_secs()) {
            return fail("UPLOAD_TIMEOUT_SECS must be between 1 and 3600");
        }
        if self.metrics_host.parse::<std::net::IpAddr>().is_err() {
            return fail("METRICS_HOST must be an IP address");
        }
        if self.ping_interval.as_millis() < 100 || self.ping_timeout.as_millis() < 100 {
            return fail("PING_INTERVAL_MS and PING_TIMEOUT_MS must be at least 100");
        }
        if self.socket_queue_bytes < 64 * 1024 {
            return fail("SOCKET_QUEUE_BYTES must be at least 65536");
        }
        if self.mongodb_timeout.as_millis() < 100 {
            return fail("MONGODB_TIMEOUT_MS must be at least 100");
        }
        if let Some(days) = self.message_retention_days {
            if days == 0 {
                return fail(
                    "MESSAGE_RETENTION_DAYS must be at least 1 (unset keeps messages forever)",
                );
            }
            if self.mongodb_uri.is_none() {
                return fail("MESSAGE_RETENTION_DAYS needs the MongoDB store (MONGODB_URI)");
            }
        }
        if !(1..=36_500).contains(&self.audit_retention_days) {
            return fail("AUDIT_RETENTION_DAYS must be between 1 and 36500");
        }
        if let Some(url) = &self.public_url {
            let rest = url
                .strip_prefix("https://")
                .or_else(|| url.strip_prefix("http://"));
            if !rest.is_some_and(|r| {
                !r.is_empty()
                    && !r.starts_with('/')
                    && !r.contains(['?', '#', '"', '\'', '<', '>', '\\'])
                    && !r.chars().any(|c| c.is_whitespace() || c.is_control())
            }) {
                return fail(
                    "PUBLIC_URL must be an http:// or https:// address with a host, without query or fragment",
                );
            }
        }
        if self.is_asymmetric() != self.jwt_public_key_file.is_some() {
            return fail(
                "JWT_PUBLIC_KEY_FILE goes with an asymmetric JWT_ALGORITHM, and only with one",
            );
        }
        if let Some(s) = &self.jwt_secret
            && s.len() < 16
        {
            return fail("JWT_SECRET must be at least 16 bytes");
        }
        if self.environment == Environment::Production {
            if !self.is_asymmetric() && self.jwt_secret.is_none() {
                return fail(
                    "SWITCHBOARD_ENV=production needs JWT_SECRET (or JWT_PUBLIC_KEY_FILE)",
                );
            }
            if self.is_asymmetric() && self.file_url_secret.is_none() {
                return fail(
                    "SWITCHBOARD_ENV=production with asymmetric JWTs needs FILE_URL_SECRET",
                );
            }
            if self.redis_url.is_some() && self.mongodb_uri.is_none() {
                return fail(
                    "SWITCHBOARD_ENV=production refuses the embedded store behind several nodes: set MONGODB_URI with REDIS_URL",
                );
            }
        }
        Ok(())
    }
}
