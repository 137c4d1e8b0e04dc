use std::time::{Duration, UNIX_EPOCH};

use jsonwebtoken::{encode, EncodingKey, Header};
use serde_json::json;

use super::*;
use crate::jwt::{Algorithm, JwtKey, TokenError};
use crate::password::tests::{fast, file_with};

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
const NOW: u64 = 1_700_000_000;

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(NOW)
}

fn jwt() -> JwtVerifier {
    JwtVerifier::new(&[Algorithm::HS256], JwtKey::Secret(SECRET)).unwrap()
}

fn token(claims: serde_json::Value) -> String {
    encode(&Header::default(), &claims, &EncodingKey::from_secret(SECRET)).unwrap()
}

fn creds<'a>(username: Option<&'a str>, password: Option<&'a str>) -> Credentials<'a> {
    Credentials {
        client_id: "c1",
        username,
        password: password.map(str::as_bytes),
        ..Credentials::default()
    }
}

fn bad(reason: BadCredentials) -> Result<Identity, AuthFailure> {
    Err(AuthFailure::BadCredentials(reason))
}

fn with_users() -> Authenticator {
    Authenticator::from_parts(AuthParts {
        passwords: Some(file_with(&[("alice", "wonderland")])),
        ..AuthParts::default()
    })
}

#[test]
fn anonymous_by_default_only_while_nothing_can_authenticate() {
    let open = Authenticator::from_parts(AuthParts::default());
    let id = open.authenticate(&creds(None, None), now()).unwrap();
    assert_eq!((id.username, id.method, id.client_id.as_str()), (None, AuthMethod::Anonymous, "c1"));
    assert!(open.summary().anonymous);

    let empty_file = Authenticator::from_parts(AuthParts {
        passwords: Some(PasswordFile::new()),
        ..AuthParts::default()
    });
    assert!(empty_file.authenticate(&creds(None, None), now()).is_ok());

    let refused = Err(AuthFailure::NotAuthorized(NotAuthorized::AnonymousNotAllowed));
    assert_eq!(with_users().authenticate(&creds(None, None), now()), refused);
    for parts in [
        AuthParts {
            jwt: Some(jwt()),
            ..AuthParts::default()
        },
        AuthParts {
            cert_username: CertUsername::CommonName,
            ..AuthParts::default()
        },
        AuthParts {
            anonymous: AnonymousPolicy::Deny,
            ..AuthParts::default()
        },
    ] {
        assert_eq!(Authenticator::from_parts(parts).authenticate(&creds(None, None), now()), refused);
    }
    let explicit = Authenticator::from_parts(AuthParts {
        anonymous: AnonymousPolicy::Allow,
        passwords: Some(file_with(&[("alice", "wonderland")])),
        ..AuthParts::default()
    });
    assert!(explicit.authenticate(&creds(None, None), now()).is_ok());
    // Wrong credentials are not turned into anonymous access.
    assert_eq!(
        explicit.authenticate(&creds(Some("alice"), Some("x")), now()),
        bad(BadCredentials::WrongPassword)
    );
}

#[test]
fn passwords() {
    let auth = with_users();
    let id = auth.authenticate(&creds(Some("alice"), Some("wonderland")), now()).unwrap();
    assert_eq!((id.username.as_deref(), id.method), (Some("alice"), AuthMethod::Password));
    assert_eq!(
        auth.authenticate(&creds(Some("alice"), Some("x")), now()),
        bad(BadCredentials::WrongPassword)
    );
    assert_eq!(
        auth.authenticate(&creds(Some("bob"), Some("x")), now()),
        bad(BadCredentials::UnknownUser)
    );
    assert_eq!(
        auth.authenticate(&creds(Some("alice"), None), now()),
        bad(BadCredentials::MissingPassword)
    );
    assert_eq!(
        auth.authenticate(&creds(Some("bob"), None), now()),
        bad(BadCredentials::MissingPassword)
    );
    assert_eq!(
        auth.authenticate(&creds(None, Some("wonderland")), now()),
        bad(BadCredentials::MissingUsername)
    );
    // An empty user name counts as none.
    assert_eq!(
        auth.authenticate(&creds(Some(""), Some("wonderland")), now()),
        bad(BadCredentials::MissingUsername)
    );
}

#[test]
fn without_a_password_file_unprovable_names_are_ignored() {
    let open = Authenticator::from_parts(AuthParts::default());
    let id = open.authenticate(&creds(Some("alice"), Some("whatever")), now()).unwrap();
    assert_eq!((id.username, id.method), (None, AuthMethod::Anonymous));
    let closed = Authenticator::from_parts(AuthParts {
        anonymous: AnonymousPolicy::Deny,
        ..AuthParts::default()
    });
    assert_eq!(
        closed.authenticate(&creds(Some("alice"), Some("x")), now()),
        bad(BadCredentials::NoPasswordFile)
    );
    assert_eq!(
        closed.authenticate(&creds(Some("alice"), None), now()),
        bad(BadCredentials::MissingPassword)
    );
}

#[test]
fn tokens_as_bearer_or_password() {
    let auth = Authenticator::from_parts(AuthParts {
        jwt: Some(jwt()),
        passwords: Some(file_with(&[("alice", "wonderland")])),
        close_on_token_expiry: true,
        ..AuthParts::default()
    });
    let t = token(json!({"sub": "bob", "exp": NOW + 60, "roles": ["sensors"], "acl": {"pub": ["sensors/%u/#"]}}));
    let bearer = Credentials {
        client_id: "c1",
        bearer: Some(&t),
        ..Credentials::default()
    };
    let id = auth.authenticate(&bearer, now()).unwrap();
    assert_eq!((id.username.as_deref(), id.method), (Some("bob"), AuthMethod::Token));
    assert_eq!(id.roles, ["sensors"]);
    assert!(id.grants.is_some());
    assert_eq!(id.expires_in(now()), Some(Duration::from_secs(90)));

    // As the password, with the subject or no user name beside it.
    assert!(auth.authenticate(&creds(Some("bob"), Some(&t)), now()).is_ok());
    assert!(auth.authenticate(&creds(None, Some(&t)), now()).is_ok());
    assert_eq!(
        auth.authenticate(&creds(Some("alice"), Some(&t)), now()),
        bad(BadCredentials::UsernameMismatch)
    );
    // Passwords still work beside JWT.
    assert!(auth.authenticate(&creds(Some("alice"), Some("wonderland")), now()).is_ok());
    // With JWT on, a password that is neither a token nor checkable is refused, even when
    // anonymous clients are allowed.
    let jwt_only = Authenticator::from_parts(AuthParts {
        jwt: Some(jwt()),
        anonymous: AnonymousPolicy::Allow,
        ..AuthParts::default()
    });
    assert_eq!(
        jwt_only.authenticate(&creds(Some("bob"), Some("eyJtruncated")), now()),
        bad(BadCredentials::NoPasswordFile)
    );

    let expired = token(json!({"sub": "bob", "exp": NOW - 3600}));
    assert_eq!(
        auth.authenticate(&creds(Some("bob"), Some(&expired)), now()),
        bad(BadCredentials::InvalidToken(TokenError::Expired))
    );
    let failure = auth
        .authenticate(
            &Credentials {
                bearer: Some(&expired),
                ..Credentials::default()
            },
            now(),
        )
        .unwrap_err();
    assert_eq!(failure.http_status(), 401);
    assert!(!format!("{failure} {failure:?}").contains(&expired[..30]), "the token leaked");

    // Expiry does not close the connection unless configured.
    let lenient = Authenticator::from_parts(AuthParts {
        jwt: Some(jwt()),
        ..AuthParts::default()
    });
    assert_eq!(lenient.authenticate(&bearer, now()).unwrap().expires_at, None);
}

#[test]
fn a_bearer_without_jwt_or_a_bad_token_is_refused_even_when_anonymous_is_allowed() {
    let open = Authenticator::from_parts(AuthParts::default());
    let t = token(json!({"sub": "bob", "exp": NOW + 60}));
    let bearer = Credentials {
        bearer: Some(&t),
        ..Credentials::default()
    };
    assert_eq!(open.authenticate(&bearer, now()), bad(BadCredentials::TokenNotAccepted));
    let with_jwt = Authenticator::from_parts(AuthParts {
        jwt: Some(jwt()),
        anonymous: AnonymousPolicy::Allow,
        ..AuthParts::default()
    });
    let forged = format!("{}x", &t[..t.len() - 1]);
    let forged = Credentials {
        bearer: Some(&forged),
        ..Credentials::default()
    };
    assert!(matches!(
        with_jwt.authenticate(&forged, now()),
        Err(AuthFailure::BadCredentials(BadCredentials::InvalidToken(_)))
    ));
}

#[test]
fn client_certificates() {
    let tls = ClientCert {
        common_name: Some("device-42".to_owned()),
        subject_alt_names: vec!["device-42.example".to_owned()],
    };
    let with_cert = Credentials {
        client_id: "c1",
        username: Some("ignored"),
        password: Some(b"ignored"),
        tls: Some(&tls),
        ..Credentials::default()
    };
    for (mode, expected) in [
        (CertUsername::CommonName, "device-42"),
        (CertUsername::SubjectAltName, "device-42.example"),
    ] {
        let auth = Authenticator::from_parts(AuthParts {
            cert_username: mode,
            ..AuthParts::default()
        });
        let id = auth.authenticate(&with_cert, now()).unwrap();
        assert_eq!((id.username.as_deref(), id.method), (Some(expected), AuthMethod::Certificate));
    }
    // Off: the certificate is not a user name.
    let off = with_users();
    assert_eq!(off.authenticate(&with_cert, now()), bad(BadCredentials::UnknownUser));
    // No CN: the other credentials are checked.
    let no_cn = ClientCert::default();
    let auth = Authenticator::from_parts(AuthParts {
        cert_username: CertUsername::CommonName,
        passwords: Some(file_with(&[("alice", "wonderland")])),
        ..AuthParts::default()
    });
    let fallback = Credentials {
        tls: Some(&no_cn),
        ..creds(Some("alice"), Some("wonderland"))
    };
    assert_eq!(auth.authenticate(&fallback, now()).unwrap().method, AuthMethod::Password);
}

#[test]
fn authorization_goes_through_the_acl() {
    let open = Authenticator::from_parts(AuthParts::default());
    let anon = Identity::anonymous("c1");
    assert!(open.authorize(&anon, Action::Publish, "any/topic").is_allowed());
    assert!(!open.needs_delivery_check());
    let auth = Authenticator::from_parts(AuthParts {
        acl: Some(Acl::parse("anonymous\ntopic read news/#\nqueue write jobs\n").unwrap()),
        ..AuthParts::default()
    });
    assert!(auth.authorize(&anon, Action::Subscribe, "news/#").is_allowed());
    assert!(!auth.authorize(&anon, Action::Publish, "news/x").is_allowed());
    assert!(auth.authorize_queue(&anon, Action::Publish, "jobs").is_allowed());
    assert!(!auth.authorize_queue(&anon, Action::Subscribe, "jobs").is_allowed());
    assert_eq!(auth.explain(&anon, Action::Publish, "x").reason, crate::acl::Reason::Default);
    assert_eq!(auth.summary().acl_rules, Some(2));
}

#[test]
fn reload_swaps_files_or_keeps_the_old_state() {
    let dir = tempfile::tempdir().unwrap();
    let passwd = dir.path().join("passwd");
    let acl = dir.path().join("acl");
    crate::password::add_or_update_user(&passwd, "alice", b"one", &fast()).unwrap();
    std::fs::write(&acl, "user alice\ntopic readwrite a/#\n").unwrap();
    let settings = AuthSettings {
        password_file: Some(passwd.clone()),
        acl_file: Some(acl.clone()),
        ..AuthSettings::default()
    };
    let auth = Authenticator::from_settings(&settings).unwrap();
    assert_eq!(auth.watched_files(), [passwd.clone(), acl.clone()]);
    let alice = auth.authenticate(&creds(Some("alice"), Some("one")), now()).unwrap();
    assert!(auth.authorize(&alice, Action::Publish, "a/x").is_allowed());
    assert!(!auth.authorize(&alice, Action::Publish, "b/x").is_allowed());

    // New files: new password, new rules, applied to the identity already held.
    crate::password::add_or_update_user(&passwd, "alice", b"two", &fast()).unwrap();
    crate::password::add_or_update_user(&passwd, "bob", b"three", &fast()).unwrap();
    std::fs::write(&acl, "user alice\ntopic readwrite b/#\n").unwrap();
    let summary = auth.reload().unwrap();
    assert_eq!(summary.to_string(), "2 users, 1 ACL rules, JWT off, anonymous refused");
    assert!(auth.authenticate(&creds(Some("alice"), Some("two")), now()).is_ok());
    assert!(auth.authorize(&alice, Action::Publish, "b/x").is_allowed());
    assert!(!auth.authorize(&alice, Action::Publish, "a/x").is_allowed());

    // A broken file: the error comes back, the old state stays.
    std::fs::write(&acl, "user alice\ntopic readwrite b/#/x\n").unwrap();
    let err = auth.reload().unwrap_err();
    assert!(matches!(err, LoadError::Acl { .. }), "{err}");
    assert!(auth.authorize(&alice, Action::Publish, "b/x").is_allowed());
    std::fs::write(&passwd, "alice:not-a-hash\n").unwrap();
    assert!(matches!(auth.reload(), Err(LoadError::PasswordLine { .. })));
    assert!(auth.authenticate(&creds(Some("bob"), Some("three")), now()).is_ok());

    // Built in memory: nothing to re-read.
    assert!(Authenticator::from_parts(AuthParts::default()).reload().is_ok());
    assert!(Authenticator::from_parts(AuthParts::default()).watched_files().is_empty());
    let missing = AuthSettings {
        password_file: Some(dir.path().join("absent")),
        ..AuthSettings::default()
    };
    assert!(Authenticator::from_settings(&missing).is_err());
}
