//! Authentication: the JWT verifier (and, for HS* deployments, the token minter behind
//! `switchboard token`), the REST extractor and the signed file URLs.
//!
//! The accepted algorithm is pinned by configuration and never read from the token header.
//! A socket is authenticated once, in the handshake middleware (`realtime/handshake.rs`, which
//! calls [`Verifier::verify`]); its [`AuthUser`] then lives in the socket's session
//! (`state::Session`), not in its extensions. REST calls carry
//! `Authorization: Bearer <token>`. Signature, `exp`, `nbf` and the optional `aud`/`iss` are
//! checked here; the identity claims' rules are `AuthUser::from_claims`. Depends only on
//! `config`, `domain`, `error` and `private_files` (the development secret's mode).

use std::path::Path;
use std::time::Duration;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::config::{Config, JwtAlgorithm};
use crate::domain::{AuthUser, FileId, Role};
use crate::error::AppError;

/// How far past `exp` (and before `nbf`) a token is still accepted unless `JWT_LEEWAY_SECS`
/// says otherwise.
pub const LEEWAY_SECS: u64 = 30;

/// Why a configured key could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("reading {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("JWT public key: {0}")]
    Key(#[from] jsonwebtoken::errors::Error),
}

/// The claims Switchboard reads.
#[derive(Debug, Deserialize)]
struct Claims {
    id: Option<String>,
    sub: Option<String>,
    role: Option<String>,
    name: Option<String>,
    /// Already checked by `jsonwebtoken` (which also accepts a fractional one, rounded); read
    /// again for the live socket's deadline.
    exp: Option<f64>,
    /// When the token was issued: a revocation refuses tokens issued before it
    /// (`service/desk/removals.rs`).
    iat: Option<f64>,
}

/// What a verified token says: who, until when it holds (its `exp` plus the leeway, Unix
/// seconds) and when it was issued (`iat`, Unix seconds, if it says).
#[derive(Debug, Clone)]
pub struct Verified {
    pub user: AuthUser,
    pub until: Option<u64>,
    pub issued_at: Option<u64>,
}

/// The claims `switchboard token` writes.
#[derive(Debug, Serialize)]
struct IssuedClaims<'a> {
    id: &'a str,
    role: &'a str,
    name: &'a str,
    iat: u64,
    exp: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    aud: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    iss: Option<&'a str>,
}

/// Checks tokens with the one configured key and algorithm.
pub struct Verifier {
    key: DecodingKey,
    validation: Validation,
    /// Set for HS* deployments, so this node can also mint tokens (`switchboard token`, tests).
    signing: Option<(EncodingKey, Algorithm)>,
    /// `aud` and `iss` required when configured (and written into minted tokens).
    audience: Option<String>,
    issuer: Option<String>,
}

fn algorithm(a: JwtAlgorithm) -> Algorithm {
    match a {
        JwtAlgorithm::HS256 => Algorithm::HS256,
        JwtAlgorithm::HS384 => Algorithm::HS384,
        JwtAlgorithm::HS512 => Algorithm::HS512,
        JwtAlgorithm::RS256 => Algorithm::RS256,
        JwtAlgorithm::RS384 => Algorithm::RS384,
        JwtAlgorithm::RS512 => Algorithm::RS512,
        JwtAlgorithm::ES256 => Algorithm::ES256,
        JwtAlgorithm::ES384 => Algorithm::ES384,
        JwtAlgorithm::EdDSA => Algorithm::EdDSA,
    }
}

impl Verifier {
    /// A verifier for an HMAC secret.
    pub fn hmac(secret: &[u8], alg: JwtAlgorithm) -> Self {
        let alg = algorithm(alg);
        Self {
            key: DecodingKey::from_secret(secret),
            validation: validation(alg),
            signing: Some((EncodingKey::from_secret(secret), alg)),
            audience: None,
            issuer: None,
        }
    }

    /// A verifier for a PEM public key (RSA, EC or Ed25519, as the algorithm says).
    pub fn public_key(path: &Path, alg: JwtAlgorithm) -> Result<Self, KeyError> {
        let pem = std::fs::read(path).map_err(|source| KeyError::Io {
            path: path.display().to_string(),
            source,
        })?;
        let alg = algorithm(alg);
        let key = match alg {
            Algorithm::ES256 | Algorithm::ES384 => DecodingKey::from_ec_pem(&pem)?,
            Algorithm::EdDSA => DecodingKey::from_ed_pem(&pem)?,
            _ => DecodingKey::from_rsa_pem(&pem)?,
        };
        Ok(Self {
            key,
            validation: validation(alg),
            signing: None,
            audience: None,
            issuer: None,
        })
    }

    /// Requires `aud` and/or `iss` (each when set): for a key shared with other services.
    pub fn restrict(mut self, audience: Option<&str>, issuer: Option<&str>) -> Self {
        let mut required = vec!["exp"];
        if let Some(aud) = audience {
            self.validation.set_audience(&[aud]);
            self.validation.validate_aud = true;
            required.push("aud");
        }
        if let Some(iss) = issuer {
            self.validation.set_issuer(&[iss]);
            required.push("iss");
        }
        self.validation.set_required_spec_claims(&required);
        self.audience = audience.map(str::to_owned);
        self.issuer = issuer.map(str::to_owned);
        self
    }

    /// Accepts tokens up to `secs` past `exp` (and before `nbf`): `JWT_LEEWAY_SECS`.
    pub fn with_leeway(mut self, secs: u64) -> Self {
        self.validation.leeway = secs;
        self
    }

    /// Checks a token and returns who it names.
    pub fn verify(&self, token: &str) -> Result<AuthUser, AppError> {
        self.verify_until(token).map(|(user, _)| user)
    }

    /// Checks a token and returns who it names and until when it holds: its `exp` plus the
    /// leeway, in Unix seconds, when a live socket opened with it is closed (`None` for a token
    /// without `exp`, which only a validation that stopped requiring it would pass).
    ///
    /// A token holds while now is before that instant, here and on a live socket alike:
    /// `jsonwebtoken` alone would accept it for the whole second after, so a socket closed for
    /// its token could reconnect with the same token once more.
    pub fn verify_until(&self, token: &str) -> Result<(AuthUser, Option<u64>), AppError> {
        self.verify_token(token).map(|v| (v.user, v.until))
    }

    /// [`verify_until`](Self::verify_until), with the token's `iat` too.
    pub fn verify_token(&self, token: &str) -> Result<Verified, AppError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation)
            .map_err(|e| AppError::unauthorized(format!("invalid token ({})", reason(&e))))?;
        let c = data.claims;
        let until = c
            .exp
            .map(|exp| (exp.round() as u64).saturating_add(self.validation.leeway));
        if until.is_some_and(|until| until <= jsonwebtoken::get_current_timestamp()) {
            return Err(AppError::unauthorized("invalid token (expired)"));
        }
        // `id` wins over `sub`.
        let user = AuthUser::from_claims(c.id.or(c.sub), c.role.as_deref(), c.name)
            .map_err(AppError::unauthorized)?;
        // A negative or fractional `iat` is taken as issued at 0 or rounded down: only ever
        // earlier, so never past a revocation.
        let issued_at = c.iat.map(|iat| iat.max(0.0).floor() as u64);
        Ok(Verified {
            user,
            until,
            issued_at,
        })
    }

    /// Mints a token (HS* only): for `switchboard token` and tests.
    pub fn issue(&self, id: &str, role: Role, name: Option<&str>, ttl: Duration) -> Option<String> {
        let (key, alg) = self.signing.as_ref()?;
        let iat = jsonwebtoken::get_current_timestamp();
        let claims = IssuedClaims {
            id,
            role: role.as_str(),
            name: name.unwrap_or(id),
            iat,
            exp: iat + ttl.as_secs(),
            aud: self.audience.as_deref(),
            iss: self.issuer.as_deref(),
        };
        jsonwebtoken::encode(&Header::new(*alg), &claims, key).ok()
    }
}

fn validation(alg: Algorithm) -> Validation {
    let mut v = Validation::new(alg);
    v.leeway = LEEWAY_SECS;
    // `nbf` is optional, but enforced (with the same leeway) when a token carries it.
    v.validate_nbf = true;
    v.validate_aud = false;
    v.set_required_spec_claims(&["exp"]);
    v
}

fn reason(e: &jsonwebtoken::errors::Error) -> &'static str {
    use jsonwebtoken::errors::ErrorKind;
    match e.kind() {
        ErrorKind::ExpiredSignature => "expired",
        ErrorKind::ImmatureSignature => "not yet valid",
        ErrorKind::InvalidSignature => "bad signature",
        ErrorKind::InvalidAlgorithm => "wrong algorithm",
        ErrorKind::MissingRequiredClaim(_) => "missing claim",
        ErrorKind::InvalidAudience => "wrong audience",
        ErrorKind::InvalidIssuer => "wrong issuer",
        _ => "malformed",
    }
}

/// Signs and checks the `sig` of file URLs, so `<img src>` works without a token.
pub struct FileSigner {
    key: Vec<u8>,
    /// `PUBLIC_URL` without a trailing slash: issued URLs start with it, so a frontend on
    /// another origin can put them into `<img src>` as they are. Empty: URLs are relative.
    public_url: String,
}

impl FileSigner {
    pub fn new(key: Vec<u8>) -> Self {
        Self {
            key,
            public_url: String::new(),
        }
    }

    /// Issues absolute URLs under `public_url` (as validated by `Config::public_url`), and
    /// accepts them back as well as the relative form.
    pub fn with_public_url(mut self, public_url: Option<&str>) -> Self {
        self.public_url = public_url.unwrap_or_default().to_owned();
        self
    }

    fn mac(&self, id: &str) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(b"switchboard-file:");
        mac.update(id.as_bytes());
        mac
    }

    /// The URL a client uses to fetch the file: relative, or absolute under `PUBLIC_URL`.
    pub fn url(&self, id: &FileId) -> String {
        let sig = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(self.mac(id.as_str()).finalize().into_bytes());
        format!("{}/api/files/{id}?sig={sig}", self.public_url)
    }

    /// Every `fileUrl` this deployment may have issued for `id` (the current form first, then the
    /// relative one when they differ): what a message carrying the file holds.
    pub fn issued_forms(&self, id: &FileId) -> Vec<String> {
        let current = self.url(id);
        let sig = current
            .rsplit_once("?sig=")
            .map(|(_, sig)| sig)
            .unwrap_or_default();
        let relative = format!("/api/files/{id}?sig={sig}");
        if relative == current {
            vec![current]
        } else {
            vec![current, relative]
        }
    }

    /// Is `sig` the signature of `id`? Constant-time.
    pub fn check(&self, id: &str, sig: &str) -> bool {
        match base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(sig) {
            Ok(bytes) => self.mac(id).verify_slice(&bytes).is_ok(),
            Err(_) => false,
        }
    }

    /// Is `url` a file URL this deployment issued (`/api/files/{id}?sig=...` with a valid sig,
    /// relative or under `PUBLIC_URL`)? Relative ones stay accepted when `PUBLIC_URL` is set
    /// later: messages saved before keep working.
    pub fn issued(&self, url: &str) -> bool {
        let url = match url.strip_prefix(self.public_url.as_str()) {
            Some(rest) if !self.public_url.is_empty() && rest.starts_with('/') => rest,
            _ => url,
        };
        let Some(rest) = url.strip_prefix("/api/files/") else {
            return false;
        };
        let Some((id, query)) = rest.split_once("?sig=") else {
            return false;
        };
        FileId::parse(id).is_ok() && !query.contains('&') && self.check(id, query)
    }
}

/// The keys a node runs with, resolved from settings (and, in development, `DATA_DIR`).
pub struct Keys {
    pub verifier: Verifier,
    pub files: FileSigner,
}

impl Keys {
    /// Resolves the keys. In development with no `JWT_SECRET`, a generated secret is kept in
    /// `DATA_DIR/jwt-secret` and reused on the next start.
    pub fn load(cfg: &Config) -> anyhow::Result<Self> {
        let verifier;
        let mut file_key = cfg
            .file_url_secret
            .as_deref()
            .map(|s| s.as_bytes().to_vec());
        if cfg.is_asymmetric() {
            let path = cfg
                .jwt_public_key_file
                .as_deref()
                .expect("validated: key file is set");
            verifier = Verifier::public_key(path, cfg.jwt_algorithm)?;
            if file_key.is_none() {
                file_key = Some(kept_secret(&cfg.data_dir, "file-url-secret")?.into_bytes());
            }
        } else {
            let secret = match &cfg.jwt_secret {
                Some(s) => s.to_string(),
                None => {
                    let s = kept_secret(&cfg.data_dir, "jwt-secret")?;
                    tracing::warn!(
                        path = %cfg.data_dir.join("jwt-secret").display(),
                        "JWT_SECRET is not set: using the development secret kept in DATA_DIR \
                         (`switchboard token` signs with it)"
                    );
                    s
                }
            };
            verifier = Verifier::hmac(secret.as_bytes(), cfg.jwt_algorithm);
            if file_key.is_none() {
                let mut mac =
                    Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
                mac.update(b"switchboard file url key");
                file_key = Some(mac.finalize().into_bytes().to_vec());
            }
        }
        let verifier = verifier
            .restrict(cfg.jwt_audience.as_deref(), cfg.jwt_issuer.as_deref())
            .with_leeway(cfg.jwt_leeway_secs);
        Ok(Self {
            verifier,
            files: FileSigner::new(file_key.expect("set above"))
                .with_public_url(cfg.public_url().as_deref()),
        })
    }
}

/// Reads `DATA_DIR/name`, creating it with 32 random bytes (base64url) if missing.
fn kept_secret(dir: &Path, name: &str) -> anyhow::Result<String> {
    let path = dir.join(name);
    crate::private_files::ensure_dir(dir)?;
    // An existing secret that others could read is tightened (and warned about), not replaced:
    // replacing it would log every user out; rotating it is the operator's call.
    crate::private_files::tighten_file(&path)?;
    if let Ok(s) = std::fs::read_to_string(&path) {
        let s = s.trim().to_owned();
        if s.len() >= 16 {
            return Ok(s);
        }
    }
    let secret =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
    crate::private_files::write_file(&path, secret.as_bytes())?;
    Ok(secret)
}

/// Reads the Bearer token of a request.
pub fn bearer(headers: &axum::http::HeaderMap) -> Option<&str> {
    let value = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// The REST extractor: any router state that can lend its [`Verifier`] (the node's
/// `AppState` does), so this module needs nothing above it.
impl<S: AsRef<Verifier> + Send + Sync> FromRequestParts<S> for AuthUser {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let token =
            bearer(&parts.headers).ok_or_else(|| AppError::unauthorized("missing Bearer token"))?;
        state.as_ref().verify(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_token_verifies_and_id_wins_over_sub() {
        let v = Verifier::hmac(b"0123456789abcdef0123", JwtAlgorithm::HS256);
        let t = v
            .issue("u1", Role::Admin, Some("Ann"), Duration::from_secs(60))
            .unwrap();
        let u = v.verify(&t).unwrap();
        assert_eq!(
            u,
            AuthUser {
                id: "u1".into(),
                name: "Ann".into(),
                role: Role::Admin
            }
        );
    }

    #[test]
    fn a_token_holds_until_its_exp_plus_the_leeway() {
        let v = Verifier::hmac(b"0123456789abcdef0123", JwtAlgorithm::HS256).with_leeway(7);
        let t = v
            .issue("u1", Role::User, None, Duration::from_secs(60))
            .unwrap();
        let (_, until) = v.verify_until(&t).unwrap();
        let now = jsonwebtoken::get_current_timestamp();
        assert!(
            (now + 60 + 7 - 1..=now + 60 + 7).contains(&until.unwrap()),
            "{until:?}"
        );
    }

    #[test]
    fn file_signature_checks_id() {
        let s = FileSigner::new(b"k".to_vec());
        let id = FileId::generate();
        let url = s.url(&id);
        assert!(s.issued(&url));
        let other = FileId::generate();
        assert!(!s.issued(&url.replace(id.as_str(), other.as_str())));
    }

    #[test]
    fn public_url_makes_file_urls_absolute_and_both_forms_are_accepted() {
        let s = FileSigner::new(b"k".to_vec()).with_public_url(Some("http://chat.test:8080"));
        let id = FileId::generate();
        let url = s.url(&id);
        assert!(url.starts_with("http://chat.test:8080/api/files/"), "{url}");
        assert!(s.issued(&url));
        let relative = url.strip_prefix("http://chat.test:8080").unwrap();
        assert!(s.issued(relative));
        assert!(!s.issued(&url.replace("chat.test:8080", "evil.test:8080")));
        assert!(!s.issued(&format!("http://chat.test:8080.evil.test{relative}")));
    }
}
