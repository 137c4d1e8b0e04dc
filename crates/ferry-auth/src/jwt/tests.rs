use super::*;
use crate::acl::{Action, Namespace, Vars};
use jsonwebtoken::{encode, EncodingKey, Header};
use serde_json::json;

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
/// 2023-11-14T22:13:20Z.
const NOW: u64 = 1_700_000_000;

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(NOW)
}

fn hs256() -> JwtVerifier {
    JwtVerifier::new(&[Algorithm::HS256], JwtKey::Secret(SECRET)).unwrap()
}

fn sign(alg: Algorithm, key: &EncodingKey, claims: &Value) -> String {
    encode(&Header::new(alg), claims, key).unwrap()
}

fn hs(claims: Value) -> String {
    sign(Algorithm::HS256, &EncodingKey::from_secret(SECRET), &claims)
}

/// An EC P-256 key pair made for the test: (private PKCS#8 PEM, public SPKI PEM).
fn ec_keys() -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    (key.serialize_pem(), key.public_key_pem())
}

#[test]
fn a_valid_hs256_token() {
    let token = hs(json!({"sub": "alice", "exp": NOW + 60, "iat": NOW, "nbf": NOW - 5, "roles": ["sensors"]}));
    let claims = hs256().verify(&token, now()).unwrap();
    assert_eq!(claims.subject, "alice");
    assert_eq!(claims.roles, ["sensors"]);
    assert_eq!(claims.grants, None);
    // Accepted until exp + leeway (30 s by default).
    assert_eq!(claims.expires_at, Some(now() + Duration::from_secs(90)));
    assert_eq!(hs256().algorithms(), [Algorithm::HS256]);
}

#[test]
fn times_are_checked_against_now_with_leeway() {
    let v = hs256().with_leeway(Duration::from_secs(10));
    let at = |secs: u64| UNIX_EPOCH + Duration::from_secs(secs);
    let token = hs(json!({"sub": "a", "exp": NOW}));
    assert!(v.verify(&token, at(NOW + 9)).is_ok());
    assert_eq!(v.verify(&token, at(NOW + 10)), Err(TokenError::Expired));
    let token = hs(json!({"sub": "a", "exp": NOW + 100, "nbf": NOW + 20}));
    assert_eq!(v.verify(&token, at(NOW + 9)), Err(TokenError::NotYetValid));
    assert!(v.verify(&token, at(NOW + 10)).is_ok());
    let token = hs(json!({"sub": "a", "exp": NOW + 100, "iat": NOW + 60}));
    assert_eq!(v.verify(&token, now()), Err(TokenError::IssuedInFuture));
    // Fractional NumericDates are valid.
    let token = hs(json!({"sub": "a", "exp": NOW as f64 + 0.5}));
    assert!(v.with_leeway(Duration::ZERO).verify(&token, now()).is_ok());
}

#[test]
fn exp_is_required_unless_configured_otherwise() {
    let token = hs(json!({"sub": "a"}));
    assert_eq!(hs256().verify(&token, now()), Err(TokenError::MissingExpiry));
    let claims = hs256().with_require_exp(false).verify(&token, now()).unwrap();
    assert_eq!(claims.expires_at, None);
}

#[test]
fn claims_of_the_wrong_type_refuse_the_token() {
    // CVE-2026-25537: an `nbf` (or `exp`) given as a string must not be skipped.
    let cases = [
        (json!({"sub": "a", "exp": NOW + 60, "nbf": "99999999999"}), "nbf"),
        (json!({"sub": "a", "exp": "99999999999"}), "exp"),
        (json!({"sub": "a", "exp": -1}), "exp"),
        (json!({"sub": "a", "exp": NOW + 60, "iat": true}), "iat"),
        (json!({"sub": 42, "exp": NOW + 60}), "sub"),
        (json!({"sub": "a", "exp": NOW + 60, "roles": "admin"}), "roles"),
        (json!({"sub": "a", "exp": NOW + 60, "roles": [1]}), "roles"),
        (json!({"sub": "a", "exp": NOW + 60, "acl": ["x"]}), "acl"),
        (json!({"sub": "a", "exp": NOW + 60, "acl": {"pub": "x"}}), "pub"),
        (json!({"sub": "a", "exp": NOW + 60, "acl": {"pub": ["a/#/b"]}}), "acl"),
        (json!({"sub": "a", "exp": NOW + 60, "acl": {"publish": ["a"]}}), "acl"),
    ];
    for (claims, name) in cases {
        let result = hs256().verify(&hs(claims.clone()), now());
        assert_eq!(result, Err(TokenError::InvalidClaim(name.to_owned())), "{claims}");
    }
    for claims in [
        json!({"exp": NOW + 60}),
        json!({"sub": "", "exp": NOW + 60}),
        json!({"sub": "a\nb", "exp": NOW + 60}),
    ] {
        assert_eq!(hs256().verify(&hs(claims), now()), Err(TokenError::MissingSubject));
    }
}

#[test]
fn acl_claims_become_grants() {
    let token = hs(
        json!({"sub": "bob", "exp": NOW + 60, "acl": {"pub": ["sensors/%u/#"], "sub": ["config/%u"], "all": ["chat/#", "/queue/jobs.*"]}}),
    );
    let grants = hs256().verify(&token, now()).unwrap().grants.unwrap();
    let vars = Vars {
        username: Some("bob"),
        client_id: Some("c"),
    };
    let covered = |action, ns, what| !grants.refuses(action, ns, what, vars);
    assert!(covered(Action::Publish, Namespace::Topic, "sensors/bob/t"));
    assert!(!covered(Action::Publish, Namespace::Topic, "config/bob"));
    assert!(covered(Action::Subscribe, Namespace::Topic, "config/bob"));
    assert!(covered(Action::Publish, Namespace::Topic, "chat/x") && covered(Action::Subscribe, Namespace::Topic, "chat/#"));
    assert!(covered(Action::Subscribe, Namespace::Queue, "jobs.eu"));
    // Only `pub`: subscriptions are left to the ACL file.
    let token = hs(json!({"sub": "bob", "exp": NOW + 60, "acl": {"pub": []}}));
    let grants = hs256().verify(&token, now()).unwrap().grants.unwrap();
    assert!(grants.for_action(Action::Subscribe).is_none());
    assert_eq!(grants.for_action(Action::Publish).map(<[_]>::len), Some(0));
}

#[test]
fn issuer_audience_and_username_claim() {
    let v = hs256().with_issuer("https://auth.example").with_audience("ferry");
    let ok = json!({"sub": "a", "exp": NOW + 60, "iss": "https://auth.example", "aud": ["other", "ferry"]});
    assert!(v.verify(&hs(ok), now()).is_ok());
    let ok = json!({"sub": "a", "exp": NOW + 60, "iss": "https://auth.example", "aud": "ferry"});
    assert!(v.verify(&hs(ok), now()).is_ok());
    let bad_iss = json!({"sub": "a", "exp": NOW + 60, "iss": "https://evil.example", "aud": "ferry"});
    assert_eq!(v.verify(&hs(bad_iss), now()), Err(TokenError::WrongIssuer));
    let no_aud = json!({"sub": "a", "exp": NOW + 60, "iss": "https://auth.example"});
    assert_eq!(v.verify(&hs(no_aud), now()), Err(TokenError::WrongAudience));
    let bad_aud = json!({"sub": "a", "exp": NOW + 60, "iss": "https://auth.example", "aud": ["other"]});
    assert_eq!(v.verify(&hs(bad_aud), now()), Err(TokenError::WrongAudience));
    // Without requirements, iss and aud are not looked at.
    assert!(hs256().verify(&hs(json!({"sub": "a", "exp": NOW + 60, "aud": 5})), now()).is_ok());

    let v = hs256().with_username_claim("preferred_username");
    let token = hs(json!({"sub": "uuid-1", "preferred_username": "alice", "exp": NOW + 60}));
    assert_eq!(v.verify(&token, now()).unwrap().subject, "alice");
}

#[test]
fn forged_tampered_and_malformed_tokens() {
    let token = hs(json!({"sub": "alice", "exp": NOW + 60}));
    let wrong_key = sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(b"another secret that is long enough!!"),
        &json!({"sub": "alice", "exp": NOW + 60}),
    );
    assert_eq!(hs256().verify(&wrong_key, now()), Err(TokenError::BadSignature));
    // Swap in another payload, keep the signature.
    let other = hs(json!({"sub": "mallory", "exp": NOW + 60}));
    let parts: Vec<&str> = token.split('.').collect();
    let other_parts: Vec<&str> = other.split('.').collect();
    let tampered = format!("{}.{}.{}", parts[0], other_parts[1], parts[2]);
    assert_eq!(hs256().verify(&tampered, now()), Err(TokenError::BadSignature));
    // alg "none" and garbage.
    let none = format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{}.", parts[1]);
    assert!(matches!(
        hs256().verify(&none, now()),
        Err(TokenError::Malformed | TokenError::AlgorithmNotAllowed)
    ));
    for garbage in ["", "a.b", "a.b.c", "eyJ.eyJ.x", "not a token"] {
        assert_eq!(hs256().verify(garbage, now()), Err(TokenError::Malformed), "{garbage:?}");
    }
    // HS384 is not accepted by an HS256-only verifier.
    let hs384 = sign(
        Algorithm::HS384,
        &EncodingKey::from_secret(SECRET),
        &json!({"sub": "a", "exp": NOW + 60}),
    );
    assert_eq!(hs256().verify(&hs384, now()), Err(TokenError::AlgorithmNotAllowed));
    let long = "a".repeat(MAX_TOKEN_LEN + 1);
    assert_eq!(hs256().verify(&long, now()), Err(TokenError::TooLong));
    // The error never repeats the token.
    let err = hs256().verify(&wrong_key, now()).unwrap_err();
    assert!(!format!("{err} {err:?}").contains(&wrong_key[..20]));
}

#[test]
fn es256_with_a_key_made_in_the_test() {
    let (private, public) = ec_keys();
    let v = JwtVerifier::new(&[Algorithm::ES256], JwtKey::PublicKeyPem(public.as_bytes())).unwrap();
    let key = EncodingKey::from_ec_pem(private.as_bytes()).unwrap();
    let token = sign(Algorithm::ES256, &key, &json!({"sub": "device-7", "exp": NOW + 60}));
    assert_eq!(v.verify(&token, now()).unwrap().subject, "device-7");
    // Another key's signature fails.
    let (other_private, _) = ec_keys();
    let other = EncodingKey::from_ec_pem(other_private.as_bytes()).unwrap();
    let forged = sign(Algorithm::ES256, &other, &json!({"sub": "device-7", "exp": NOW + 60}));
    assert_eq!(v.verify(&forged, now()), Err(TokenError::BadSignature));
    // Algorithm confusion: an HS256 token "signed" with the public key as the secret.
    let confused = sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(public.as_bytes()),
        &json!({"sub": "admin", "exp": NOW + 60}),
    );
    assert_eq!(v.verify(&confused, now()), Err(TokenError::AlgorithmNotAllowed));
}

#[test]
fn rs256_with_a_key_made_in_the_test() {
    use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der, PublicKeyX509Der};
    use aws_lc_rs::signature::KeyPair;
    let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
    let private: Pkcs8V1Der<'_> = pair.as_der().unwrap();
    let public: PublicKeyX509Der<'_> = pair.public_key().as_der().unwrap();
    let private = pem::encode(&pem::Pem::new("PRIVATE KEY", private.as_ref()));
    let public = pem::encode(&pem::Pem::new("PUBLIC KEY", public.as_ref()));
    let v = JwtVerifier::new(&[Algorithm::RS256, Algorithm::PS256], JwtKey::PublicKeyPem(public.as_bytes())).unwrap();
    let key = EncodingKey::from_rsa_pem(private.as_bytes()).unwrap();
    for alg in [Algorithm::RS256, Algorithm::PS256] {
        let token = sign(alg, &key, &json!({"sub": "svc", "exp": NOW + 60}));
        assert_eq!(v.verify(&token, now()).unwrap().subject, "svc");
    }
    let rs512 = sign(Algorithm::RS512, &key, &json!({"sub": "svc", "exp": NOW + 60}));
    assert_eq!(v.verify(&rs512, now()), Err(TokenError::AlgorithmNotAllowed));
}

#[test]
fn configuration_errors() {
    let weak = JwtVerifier::new(&[Algorithm::HS256], JwtKey::Secret(b"short")).unwrap_err();
    assert!(matches!(weak, JwtConfigError::WeakSecret { len: 5 }));
    let mixed = JwtVerifier::new(&[Algorithm::HS256, Algorithm::RS256], JwtKey::Secret(SECRET)).unwrap_err();
    assert!(mixed.to_string().contains("RS256"), "{mixed}");
    let (_, public) = ec_keys();
    let hs_with_pem = JwtVerifier::new(&[Algorithm::HS256], JwtKey::PublicKeyPem(public.as_bytes())).unwrap_err();
    assert!(matches!(hs_with_pem, JwtConfigError::Mismatch { .. }), "{hs_with_pem}");
    let rsa_with_ec = JwtVerifier::new(&[Algorithm::RS256], JwtKey::PublicKeyPem(public.as_bytes())).unwrap_err();
    assert!(matches!(rsa_with_ec, JwtConfigError::BadPublicKey { .. }), "{rsa_with_ec}");
    let garbage = JwtVerifier::new(&[Algorithm::ES256], JwtKey::PublicKeyPem(b"not a pem")).unwrap_err();
    assert!(matches!(garbage, JwtConfigError::BadPublicKey { .. }));
    assert!(JwtVerifier::new(&[], JwtKey::Secret(SECRET)).is_err());
}

#[test]
fn from_settings_reads_files_and_infers_algorithms() {
    let dir = tempfile::tempdir().unwrap();
    assert!(JwtVerifier::from_settings(&JwtSettings::default()).unwrap().is_none());

    let secret_file = dir.path().join("secret");
    std::fs::write(&secret_file, [SECRET, b"\n"].concat()).unwrap();
    let settings = JwtSettings {
        secret_file: Some(secret_file),
        leeway: Duration::ZERO,
        ..JwtSettings::default()
    };
    let v = JwtVerifier::from_settings(&settings).unwrap().unwrap();
    assert_eq!(v.algorithms(), [Algorithm::HS256]);
    assert!(v.verify(&hs(json!({"sub": "a", "exp": NOW + 1})), now()).is_ok());
    assert_eq!(v.verify(&hs(json!({"sub": "a", "exp": NOW})), now()), Err(TokenError::Expired));

    let (private, public) = ec_keys();
    let key_file = dir.path().join("jwt.pem");
    std::fs::write(&key_file, &public).unwrap();
    let settings = JwtSettings {
        public_key_file: Some(key_file.clone()),
        issuer: Some("me".to_owned()),
        ..JwtSettings::default()
    };
    let v = JwtVerifier::from_settings(&settings).unwrap().unwrap();
    assert_eq!(v.algorithms(), [Algorithm::ES256]);
    let key = EncodingKey::from_ec_pem(private.as_bytes()).unwrap();
    let token = sign(Algorithm::ES256, &key, &json!({"sub": "a", "exp": NOW + 60, "iss": "me"}));
    assert!(v.verify(&token, now()).is_ok());

    let several = JwtSettings {
        secret: Some("x".repeat(32)),
        public_key_file: Some(key_file),
        ..JwtSettings::default()
    };
    assert!(matches!(JwtVerifier::from_settings(&several), Err(JwtConfigError::SeveralKeys)));
    let unknown = JwtSettings {
        secret: Some("x".repeat(32)),
        algorithms: vec!["HS257".to_owned()],
        ..JwtSettings::default()
    };
    assert!(matches!(
        JwtVerifier::from_settings(&unknown),
        Err(JwtConfigError::UnknownAlgorithm(_))
    ));
    let missing = JwtSettings {
        public_key_file: Some(dir.path().join("absent.pem")),
        ..JwtSettings::default()
    };
    let err = JwtVerifier::from_settings(&missing).unwrap_err().to_string();
    assert!(err.contains("absent.pem"), "{err}");
}

#[test]
fn telling_tokens_from_passwords() {
    assert!(looks_like_token(&hs(json!({"sub": "a"}))));
    assert!(looks_like_token("eyJhbGciOiJub25lIn0.eyJzdWIiOiJhIn0."));
    for not in [
        "",
        "password",
        "eyJ",
        "eyJa.b",
        "eyJa.b.c.d",
        "eyJa..c",
        "eyJa.b c.d",
        "abc.def.ghi",
    ] {
        assert!(!looks_like_token(not), "{not:?}");
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 200, failure_persistence: None, ..Default::default() })]

    /// Hostile tokens are refused, never a panic.
    #[test]
    fn verifying_never_panics(token in "(eyJ)?[A-Za-z0-9_=+/-]{0,40}(\\.[A-Za-z0-9_-]{0,40}){0,3}") {
        proptest::prop_assert!(hs256().verify(&token, now()).is_err());
    }
}
