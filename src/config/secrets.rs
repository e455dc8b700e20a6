//! The secrets: settings read from the environment only (a flag's value is readable by every
//! local user through `ps`), held in a [`Secret`] whose `Debug` shows nothing.

/// The settings read from the environment only (never a flag), with what each is.
pub const SECRET_VARIABLES: [&str; 5] = [
    "JWT_SECRET",
    "FILE_URL_SECRET",
    "MONGODB_URI",
    "REDIS_URL",
    "WEBHOOK_SECRET",
];

pub(super) const SECRETS_HELP: &str = "\
Secrets are read from the environment only, never from flags (a flag's value is readable by every
local user through `ps`):
  [env: JWT_SECRET]       HS256 secret. In development a generated one is kept in DATA_DIR;
                          required in production (or JWT_PUBLIC_KEY_FILE)
  [env: FILE_URL_SECRET]  key for the `sig` of file URLs; defaults to one derived from JWT_SECRET
                          (or kept in DATA_DIR); every node of a cluster must share it
  [env: MONGODB_URI]      MongoDB connection string; unset keeps the embedded store
  [env: REDIS_URL]        set, it makes this node part of a cluster: redis:// or rediss:// (one
                          server), redis-sentinel://host:port?sentinelServiceName=NAME&node=host:port
                          (Sentinel), redis-cluster://host:port?node=host:port (Redis Cluster). See
                          docs/cluster.md
  [env: WEBHOOK_SECRET]   the whsec_ secret(s) of WEBHOOK_URL, space-separated during a rotation
                          (docs/webhooks.md)";

/// A setting that must never reach a log, a panic message or a `Debug` print: its `Debug`
/// is `[redacted]`. It reads as the `str` it holds.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

impl std::ops::Deref for Secret {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Self {
        Self(s)
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Self {
        Self(s.to_owned())
    }
}
