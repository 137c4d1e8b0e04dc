//! JWT bearer tokens, verified with the `jsonwebtoken` crate (aws-lc-rs backend).
//!
//! The crate checks the signature and that the header's `alg` is one of ours (all of the
//! key's kind, so an RSA public key can never be used as an HMAC secret). Every claim is
//! then checked here, strictly typed, against the `now` passed in: `exp` (required unless
//! configured otherwise), `nbf`, `iat` (not in the future), `iss`, `aud`, the user name
//! claim (`sub` by default), and the optional `roles` and `acl` claims. A claim of the
//! wrong type refuses the token.
//!
//! The `acl` claim is an object in the style of EMQX's: `{"pub": [...], "sub": [...],
//! "all": [...]}`, each an optional list of patterns in MQTT syntax with `%u`/`%c`
//! (`/queue/NAME` for STOMP queues); `all` counts for both. (Not top-level `pub`/`sub`:
//! `sub` is the registered subject claim.)

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::errors::ErrorKind;
pub use jsonwebtoken::Algorithm;
use jsonwebtoken::{AlgorithmFamily, DecodingKey, Validation};
use serde_json::{Map, Value};
use thiserror::Error;

use crate::acl::TokenGrants;
use crate::config::JwtSettings;

/// Longest token accepted, in bytes.
pub const MAX_TOKEN_LEN: usize = 8 * 1024;

/// Shortest HMAC secret accepted, in bytes (RFC 7518 §3.2: at least the hash's size).
pub const MIN_SECRET_LEN: usize = 32;

/// Why the JWT settings cannot be used.
#[derive(Debug, Error)]
pub enum JwtConfigError {
    /// A key file could not be read.
    #[error("auth.jwt: cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// An algorithm name `jsonwebtoken` does not know.
    #[error("auth.jwt.algorithms: unknown algorithm {0:?}")]
    UnknownAlgorithm(String),
    /// More than one of `secret`, `secret_file`, `public_key_file`.
    #[error("auth.jwt: set one of secret, secret_file and public_key_file, not several")]
    SeveralKeys,
    /// No key at all.
    #[error("auth.jwt: no key (secret, secret_file or public_key_file)")]
    NoKey,
    /// The HMAC secret is too short.
    #[error("auth.jwt: the secret is {len} bytes long; at least {MIN_SECRET_LEN} are needed")]
    WeakSecret {
        /// Its length.
        len: usize,
    },
    /// The public key PEM could not be parsed as a key for the algorithms.
    #[error("auth.jwt.public_key_file: not a PEM public key for {algorithms}")]
    BadPublicKey {
        /// The algorithms it was meant for.
        algorithms: String,
    },
    /// Algorithms of different kinds, or of another kind than the key.
    #[error("auth.jwt.algorithms: {algorithm:?} does not go with {key}")]
    Mismatch {
        /// The algorithm.
        algorithm: String,
        /// The kind of key.
        key: &'static str,
    },
}

/// Why a token is refused. Never holds the token.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TokenError {
    /// Longer than [`MAX_TOKEN_LEN`].
    #[error("the token is too long")]
    TooLong,
    /// Not a well-formed JWT (parts, base64, JSON, header).
    #[error("the token is malformed")]
    Malformed,
    /// Its `alg` is not one of the accepted algorithms.
    #[error("the token's algorithm is not accepted")]
    AlgorithmNotAllowed,
    /// The signature does not verify.
    #[error("the token's signature is invalid")]
    BadSignature,
    /// `exp` has passed.
    #[error("the token has expired")]
    Expired,
    /// `nbf` has not come yet.
    #[error("the token is not valid yet")]
    NotYetValid,
    /// `iat` is in the future.
    #[error("the token was issued in the future")]
    IssuedInFuture,
    /// No `exp`, and one is required.
    #[error("the token has no expiry")]
    MissingExpiry,
    /// No user name claim, or an empty one.
    #[error("the token names no user")]
    MissingSubject,
    /// `iss` is missing or not the required one.
    #[error("the token's issuer is not accepted")]
    WrongIssuer,
    /// `aud` is missing or does not include the required one.
    #[error("the token's audience is not accepted")]
    WrongAudience,
    /// A claim has the wrong type or an invalid value (the claim's name).
    #[error("the token's {0:?} claim is invalid")]
    InvalidClaim(String),
}

/// The key tokens are verified with.
#[derive(Clone, Copy)]
pub enum JwtKey<'a> {
    /// An HMAC secret (`HS*`).
    Secret(&'a [u8]),
    /// A PEM public key: RSA (`RS*`, `PS*`), EC (`ES*`) or Ed25519 (`EdDSA`).
    PublicKeyPem(&'a [u8]),
}

/// What a verified token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenClaims {
    /// The user name (the `sub` claim, or the configured one).
    pub subject: String,
    /// When the token stops being accepted (`exp` plus the leeway); `None` without `exp`.
    pub expires_at: Option<SystemTime>,
    /// Roles from the `roles` claim.
    pub roles: Vec<String>,
    /// ACL grants from the `acl` claim; `None` when the token has none.
    pub grants: Option<TokenGrants>,
}

/// Verifies tokens: the key, the accepted algorithms, and the claim requirements.
#[derive(Clone)]
pub struct JwtVerifier {
    key: DecodingKey,
    validation: Validation,
    issuer: Option<String>,
    audience: Option<String>,
    leeway: Duration,
    require_exp: bool,
    username_claim: String,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("algorithms", &self.validation.algorithms)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("leeway", &self.leeway)
            .field("require_exp", &self.require_exp)
            .field("username_claim", &self.username_claim)
            .finish_non_exhaustive()
    }
}

fn family_name(family: AlgorithmFamily) -> &'static str {
    match family {
        AlgorithmFamily::Hmac => "an HMAC secret",
        AlgorithmFamily::Rsa => "an RSA key",
        AlgorithmFamily::Ec => "an EC key",
        AlgorithmFamily::Ed => "an Ed25519 key",
    }
}

impl JwtVerifier {
    /// A verifier for tokens signed with one of `algorithms` (all of `key`'s kind), with the
    /// defaults of [`JwtSettings`]: 30 s leeway, `exp` required, user name in `sub`, no
    /// issuer or audience required.
    pub fn new(algorithms: &[Algorithm], key: JwtKey<'_>) -> Result<Self, JwtConfigError> {
        let Some(first) = algorithms.first() else {
            return Err(JwtConfigError::NoKey);
        };
        let family = first.family();
        let key_family = match key {
            JwtKey::Secret(_) => AlgorithmFamily::Hmac,
            JwtKey::PublicKeyPem(_) if family == AlgorithmFamily::Hmac => AlgorithmFamily::Rsa,
            JwtKey::PublicKeyPem(_) => family,
        };
        if let Some(alg) = algorithms.iter().find(|a| a.family() != key_family) {
            return Err(JwtConfigError::Mismatch {
                algorithm: format!("{alg:?}"),
                key: family_name(key_family),
            });
        }
        let key = match key {
            JwtKey::Secret(secret) if secret.len() < MIN_SECRET_LEN => return Err(JwtConfigError::WeakSecret { len: secret.len() }),
            JwtKey::Secret(secret) => DecodingKey::from_secret(secret),
            JwtKey::PublicKeyPem(pem) => {
                let parsed = match family {
                    AlgorithmFamily::Ec => DecodingKey::from_ec_pem(pem),
                    AlgorithmFamily::Ed => DecodingKey::from_ed_pem(pem),
                    _ => DecodingKey::from_rsa_pem(pem),
                };
                parsed.map_err(|_| JwtConfigError::BadPublicKey {
                    algorithms: format!("{algorithms:?}"),
                })?
            }
        };
        // Signature and `alg` only: every claim is checked in `verify`, against `now`.
        let mut validation = Validation::new(*first);
        validation.algorithms = algorithms.to_vec();
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.leeway = 0;
        let defaults = JwtSettings::default();
        Ok(Self {
            key,
            validation,
            issuer: None,
            audience: None,
            leeway: defaults.leeway,
            require_exp: defaults.require_exp,
            username_claim: defaults.username_claim,
        })
    }

    /// Builds the verifier `settings` describe, reading the key file; `Ok(None)` when JWT is
    /// off (no key set).
    pub fn from_settings(settings: &JwtSettings) -> Result<Option<Self>, JwtConfigError> {
        let keys = [
            settings.secret.is_some(),
            settings.secret_file.is_some(),
            settings.public_key_file.is_some(),
        ];
        match keys.iter().filter(|set| **set).count() {
            0 => return Ok(None),
            1 => {}
            _ => return Err(JwtConfigError::SeveralKeys),
        }
        let read = |path: &Path| {
            std::fs::read(path).map_err(|source| JwtConfigError::Io {
                path: path.to_owned(),
                source,
            })
        };
        let mut algorithms = settings
            .algorithms
            .iter()
            .map(|name| Algorithm::from_str(name).map_err(|_| JwtConfigError::UnknownAlgorithm(name.clone())))
            .collect::<Result<Vec<_>, _>>()?;
        let verifier = if let Some(path) = &settings.public_key_file {
            let pem = read(path)?;
            if algorithms.is_empty() {
                // RS256 if it is an RSA key, else ES256.
                let rsa = DecodingKey::from_rsa_pem(&pem).is_ok();
                algorithms.push(if rsa { Algorithm::RS256 } else { Algorithm::ES256 });
            }
            Self::new(&algorithms, JwtKey::PublicKeyPem(&pem))?
        } else {
            let secret = match (&settings.secret, &settings.secret_file) {
                (Some(secret), _) => secret.as_bytes().to_vec(),
                (None, Some(path)) => {
                    let mut bytes = read(path)?;
                    while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                        bytes.pop();
                    }
                    bytes
                }
                (None, None) => return Err(JwtConfigError::NoKey),
            };
            if algorithms.is_empty() {
                algorithms.push(Algorithm::HS256);
            }
            Self::new(&algorithms, JwtKey::Secret(&secret))?
        };
        let mut verifier = verifier
            .with_leeway(settings.leeway)
            .with_require_exp(settings.require_exp)
            .with_username_claim(&settings.username_claim);
        verifier.issuer = settings.issuer.clone();
        verifier.audience = settings.audience.clone();
        Ok(Some(verifier))
    }

    /// Requires `iss` to be `issuer`.
    pub fn with_issuer(mut self, issuer: &str) -> Self {
        self.issuer = Some(issuer.to_owned());
        self
    }

    /// Requires `aud` to be (or include) `audience`.
    pub fn with_audience(mut self, audience: &str) -> Self {
        self.audience = Some(audience.to_owned());
        self
    }

    /// Tolerates this much clock skew on `exp`, `nbf` and `iat`.
    pub fn with_leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// Whether tokens without `exp` are refused.
    pub fn with_require_exp(mut self, require: bool) -> Self {
        self.require_exp = require;
        self
    }

    /// Takes the user name from `claim` instead of `sub`.
    pub fn with_username_claim(mut self, claim: &str) -> Self {
        self.username_claim = claim.to_owned();
        self
    }

    /// The accepted algorithms.
    pub fn algorithms(&self) -> &[Algorithm] {
        &self.validation.algorithms
    }

    /// Verifies `token` at wall-clock time `now`.
    pub fn verify(&self, token: &str, now: SystemTime) -> Result<TokenClaims, TokenError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::TooLong);
        }
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, &self.key, &self.validation).map_err(|e| match e.kind() {
            ErrorKind::InvalidSignature => TokenError::BadSignature,
            ErrorKind::InvalidAlgorithm => TokenError::AlgorithmNotAllowed,
            _ => TokenError::Malformed,
        })?;
        let claims = data.claims;
        let now = now.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO).as_secs_f64();
        let leeway = self.leeway.as_secs_f64();

        let exp = numeric_date(&claims, "exp")?;
        match exp {
            None if self.require_exp => return Err(TokenError::MissingExpiry),
            Some(exp) if now >= exp + leeway => return Err(TokenError::Expired),
            _ => {}
        }
        if numeric_date(&claims, "nbf")?.is_some_and(|nbf| now + leeway < nbf) {
            return Err(TokenError::NotYetValid);
        }
        if numeric_date(&claims, "iat")?.is_some_and(|iat| iat > now + leeway) {
            return Err(TokenError::IssuedInFuture);
        }
        if let Some(issuer) = &self.issuer {
            if claims.get("iss").and_then(Value::as_str) != Some(issuer.as_str()) {
                return Err(TokenError::WrongIssuer);
            }
        }
        if let Some(audience) = &self.audience {
            let ok = match claims.get("aud") {
                Some(Value::String(aud)) => aud == audience,
                Some(Value::Array(auds)) => auds.iter().any(|a| a.as_str() == Some(audience.as_str())),
                _ => false,
            };
            if !ok {
                return Err(TokenError::WrongAudience);
            }
        }
        let subject = match claims.get(&self.username_claim) {
            Some(Value::String(s)) if !s.is_empty() && !s.chars().any(char::is_control) => s.clone(),
            None | Some(Value::String(_)) => return Err(TokenError::MissingSubject),
            Some(_) => return Err(TokenError::InvalidClaim(self.username_claim.clone())),
        };
        let roles = string_list(&claims, "roles")?.unwrap_or_default();
        let grants = match claims.get("acl") {
            None => None,
            Some(Value::Object(acl)) => Some(grants(acl)?),
            Some(_) => return Err(TokenError::InvalidClaim("acl".to_owned())),
        };
        let expires_at = exp.and_then(|exp| UNIX_EPOCH.checked_add(Duration::try_from_secs_f64(exp + leeway).ok()?));
        Ok(TokenClaims {
            subject,
            expires_at,
            roles,
            grants,
        })
    }
}

/// A NumericDate claim (seconds since the epoch, possibly fractional); any other type
/// refuses the token.
fn numeric_date(claims: &Map<String, Value>, name: &str) -> Result<Option<f64>, TokenError> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => match n.as_f64() {
            Some(v) if v.is_finite() && v >= 0.0 => Ok(Some(v)),
            _ => Err(TokenError::InvalidClaim(name.to_owned())),
        },
        Some(_) => Err(TokenError::InvalidClaim(name.to_owned())),
    }
}

/// The `acl` claim: `{"pub": [...], "sub": [...], "all": [...]}`, each list optional
/// (`all` counts for both).
fn grants(acl: &Map<String, Value>) -> Result<TokenGrants, TokenError> {
    let invalid = || TokenError::InvalidClaim("acl".to_owned());
    if acl.keys().any(|k| !matches!(k.as_str(), "pub" | "sub" | "all")) {
        return Err(invalid());
    }
    let all = string_list(acl, "all")?;
    let join = |list: Option<Vec<String>>| match (list, &all) {
        (None, None) => None,
        (list, all) => Some(list.into_iter().chain(all.clone()).flatten().collect::<Vec<_>>()),
    };
    let publish = join(string_list(acl, "pub")?);
    let subscribe = join(string_list(acl, "sub")?);
    TokenGrants::new(publish.as_deref(), subscribe.as_deref()).map_err(|_| invalid())
}

/// An optional list of strings.
fn string_list(claims: &Map<String, Value>, name: &str) -> Result<Option<Vec<String>>, TokenError> {
    let invalid = || TokenError::InvalidClaim(name.to_owned());
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map(str::to_owned).ok_or_else(invalid))
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(_) => Err(invalid()),
    }
}

/// Whether `s` looks like a JWT (three base64url parts, the first a JSON object): how a
/// password or passcode is told to be a token.
pub fn looks_like_token(s: &str) -> bool {
    let base64url = |part: &str| part.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    let mut parts = s.split('.');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(header), Some(payload), Some(signature), None) => {
            header.starts_with("eyJ") && base64url(header) && !payload.is_empty() && base64url(payload) && base64url(signature)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests;
