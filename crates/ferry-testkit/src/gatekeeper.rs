//! Authentication fixtures for tests against ferry-auth: password hashes that are quick
//! in a debug build, HS256 tokens, and ready-made `Gatekeeper`s.

use std::sync::Arc;

use ferry_auth::config::AnonymousPolicy;
use ferry_auth::jwt::{Algorithm, JwtKey};
use ferry_auth::password::{hash_password, HashParams};
use ferry_auth::{AuthParts, AuthSettings, Authenticator, Gatekeeper, JwtVerifier, LimitSettings, RunInline};

/// Light argon2id parameters (64 KiB, 1 pass, 1 lane): the defaults take seconds in a
/// debug build.
pub fn light_params() -> HashParams {
    HashParams::new(64, 1, 1).unwrap()
}

/// `password` hashed with [`light_params`], as a password file line takes it.
pub fn light_hash(password: &str) -> String {
    hash_password(password.as_bytes(), &light_params()).unwrap()
}

/// An HS256 token over `claims`, signed with `secret`.
pub fn hs256_token(secret: &[u8], claims: &serde_json::Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(secret),
    )
    .unwrap()
}

/// A gatekeeper that admits anonymous clients, with `limits`; checks run inline.
pub fn anonymous_gatekeeper(limits: LimitSettings) -> Gatekeeper {
    let authenticator = Arc::new(Authenticator::from_parts(AuthParts {
        anonymous: AnonymousPolicy::Allow,
        ..AuthParts::default()
    }));
    Gatekeeper::new(authenticator, &AuthSettings::default(), limits, Arc::new(RunInline))
}

/// A gatekeeper that verifies HS256 tokens signed with `secret` and nothing else, with
/// default settings and limits; checks run inline.
pub fn jwt_gatekeeper(secret: &[u8]) -> Gatekeeper {
    let authenticator = Arc::new(Authenticator::from_parts(AuthParts {
        jwt: Some(JwtVerifier::new(&[Algorithm::HS256], JwtKey::Secret(secret)).unwrap()),
        ..AuthParts::default()
    }));
    Gatekeeper::new(
        authenticator,
        &AuthSettings::default(),
        LimitSettings::default(),
        Arc::new(RunInline),
    )
}
