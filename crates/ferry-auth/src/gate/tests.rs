use std::sync::atomic::Ordering;

use super::*;
use crate::acl::Acl;
use crate::config::FailedAuthSettings;
use crate::password::tests::file_with;

/// An offload that keeps the jobs until the test runs them.
#[derive(Default)]
struct Deferred(Mutex<Vec<Box<dyn FnOnce() + Send>>>);

impl Offload for Deferred {
    fn run(&self, job: Box<dyn FnOnce() + Send>) {
        self.0.lock().push(job);
    }
}

impl Deferred {
    fn run_all(&self) -> usize {
        let jobs = std::mem::take(&mut *self.0.lock());
        let n = jobs.len();
        jobs.into_iter().for_each(|job| job());
        n
    }
}

fn attempt(username: Option<&str>, password: Option<&str>) -> ConnectAttempt {
    ConnectAttempt {
        peer: "192.0.2.1:5000".parse().unwrap(),
        protocol: "mqtt",
        client_id: "c1".into(),
        username: username.map(str::to_owned),
        password: password.map(|p| p.as_bytes().to_vec()),
        transport: None,
    }
}

fn with_alice(offload: Arc<dyn Offload>, failed_auth: FailedAuthSettings) -> Arc<Gatekeeper> {
    let authenticator = Arc::new(Authenticator::from_parts(AuthParts {
        passwords: Some(file_with(&[("alice", "wonderland")])),
        acl: Some(Acl::parse("user alice\ntopic readwrite alice/#\ntopic deny alice/secret/#\n").unwrap()),
        ..AuthParts::default()
    }));
    let auth = AuthSettings {
        failed_auth,
        ..AuthSettings::default()
    };
    Arc::new(Gatekeeper::new(authenticator, &auth, LimitSettings::default(), offload))
}

#[test]
fn anonymous_verdict_is_ready_at_once() {
    let gate = Arc::new(Gatekeeper::open());
    let wakeup = Wakeup::new();
    let verdict = gate.check(attempt(None, None), Instant::now(), wakeup).take().unwrap();
    assert!(verdict.result.is_ok());
    assert_eq!(verdict.delay, Duration::ZERO);
    assert_eq!(gate.stats.auth_successes.load(Ordering::Relaxed), 1);
}

#[test]
fn password_checks_are_offloaded_and_ring_the_wakeup() {
    let offload = Arc::new(Deferred::default());
    let gate = with_alice(offload.clone(), FailedAuthSettings::default());
    let pending = gate.check(attempt(Some("alice"), Some("wonderland")), Instant::now(), Wakeup::new());
    assert!(pending.take().is_none(), "the hash is checked on the offload");
    assert_eq!(offload.run_all(), 1);
    let identity = pending.take().unwrap().result.unwrap();
    assert_eq!(identity.username.as_deref(), Some("alice"));
    assert!(pending.take().is_none(), "a verdict is taken once");
    assert!(gate.may_publish(&identity, "alice/x"));
    assert!(!gate.may_publish(&identity, "bob/x"));
    assert!(gate.may_subscribe(&identity, "alice/+"));
    assert!(gate.needs_delivery_check(&identity));
    assert!(!gate.may_receive(&identity, "alice/secret/k"));
    assert_eq!(gate.stats.denied_publish.load(Ordering::Relaxed), 1);
    assert_eq!(gate.stats.denied_delivery.load(Ordering::Relaxed), 1);
}

#[test]
fn repeated_failures_from_one_address_are_delayed() {
    let failed_auth = FailedAuthSettings {
        max_failures: 2,
        delay: Duration::from_millis(100),
        ..FailedAuthSettings::default()
    };
    let gate = with_alice(Arc::new(RunInline), failed_auth);
    let now = Instant::now();
    let mut delays = Vec::new();
    for _ in 0..4 {
        let v = gate
            .check(attempt(Some("alice"), Some("wrong")), now, Wakeup::new())
            .take()
            .unwrap();
        assert_eq!(v.result.unwrap_err().mqtt_v5_reason_code(), 0x86);
        delays.push(v.delay.as_millis());
    }
    assert_eq!(delays, [0, 0, 100, 200]);
    assert_eq!(gate.stats.auth_bad_credentials.load(Ordering::Relaxed), 4);
    // A success clears the address.
    let ok = gate
        .check(attempt(Some("alice"), Some("wonderland")), now, Wakeup::new())
        .take()
        .unwrap();
    assert!(ok.result.is_ok());
    let next = gate
        .check(attempt(Some("alice"), Some("wonderland")), now, Wakeup::new())
        .take()
        .unwrap();
    assert_eq!(next.delay, Duration::ZERO);
}

/// A gatekeeper that lets everyone in, under `limits`.
fn open_gate(limits: LimitSettings) -> Gatekeeper {
    Gatekeeper::new(
        Arc::new(Authenticator::from_parts(AuthParts::default())),
        &AuthSettings::default(),
        limits,
        Arc::new(RunInline),
    )
}

#[test]
fn admission_counts_and_rates() {
    let limits = LimitSettings {
        max_connections: 3,
        max_connections_per_address: 2,
        connection_rate: 1.0,
        connection_burst: 10,
        connection_max_wait: Duration::ZERO,
        ..LimitSettings::default()
    };
    let gate = open_gate(limits);
    let now = Instant::now();
    let a: IpAddr = "192.0.2.1".parse().unwrap();
    let b: IpAddr = "192.0.2.2".parse().unwrap();
    let g1 = gate.admit(a, now).unwrap();
    let _g2 = gate.admit(a, now).unwrap();
    assert!(matches!(
        gate.admit(a, now),
        Err(Refusal::TooMany(LimitExceeded::PerAddress { max: 2 }))
    ));
    let _g3 = gate.admit(b, now).unwrap();
    assert!(matches!(gate.admit(b, now), Err(Refusal::TooMany(LimitExceeded::Total { max: 3 }))));
    drop(g1);
    assert_eq!(gate.open_connections(), 2);
    assert!(gate.admit(a, now).is_ok());
    assert_eq!(gate.stats.refused_address.load(Ordering::Relaxed), 1);
    assert_eq!(gate.stats.refused_total.load(Ordering::Relaxed), 1);
    // The burst of 10 is spent (6 attempts from a and b so far are counted per address).
    let c: IpAddr = "192.0.2.3".parse().unwrap();
    let refused = (0..20).filter(|_| matches!(gate.admit(c, now), Err(Refusal::TooFast))).count();
    assert_eq!(refused, 10);
}

#[test]
fn rate_buckets_only_when_configured() {
    let open = Gatekeeper::open();
    assert!(open.message_bucket(Instant::now()).is_none());
    assert!(open.byte_bucket(Instant::now()).is_none());
    let limits = LimitSettings {
        messages_per_second: 10.0,
        message_burst: 5,
        bytes_per_second: 1000,
        ..LimitSettings::default()
    };
    let gate = open_gate(limits);
    let now = Instant::now();
    let mut bucket = gate.message_bucket(now).unwrap();
    assert_eq!((0..10).filter(|_| bucket.try_take(now, 1)).count(), 5);
    assert!(gate.byte_bucket(now).is_some());
}

#[test]
fn connections_beyond_the_rate_are_paced_not_refused() {
    let limits = LimitSettings {
        connection_rate: 10.0,
        connection_burst: 2,
        connection_max_wait: Duration::from_secs(1),
        ..LimitSettings::default()
    };
    let gate = open_gate(limits);
    let now = Instant::now();
    let a: IpAddr = "192.0.2.9".parse().unwrap();
    let admitted: Vec<_> = (0..12).map(|_| gate.admit(a, now)).collect();
    let waits: Vec<Option<Duration>> = admitted.iter().map(|r| r.as_ref().ok().map(|x| x.wait)).collect();
    assert_eq!(waits[0], Some(Duration::ZERO));
    assert_eq!(waits[1], Some(Duration::ZERO));
    assert_eq!(waits[2], Some(Duration::from_millis(100)));
    assert_eq!(waits[11], Some(Duration::from_secs(1)));
    assert!(matches!(gate.admit(a, now), Err(Refusal::TooFast)), "past the longest wait");
    assert_eq!(gate.stats.paced.load(Ordering::Relaxed), 10);
    assert_eq!(gate.stats.refused_rate.load(Ordering::Relaxed), 1);
    assert_eq!(gate.open_connections(), 12, "paced connections are counted while they wait");
}
