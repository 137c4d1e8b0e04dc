//! The least needed to run the real `ferry` binary for ferry-bench's tests: build it,
//! start it on ephemeral loopback ports, learn the ports from its JSON log lines, kill
//! it when dropped. (The workspace's own harness is `tests/common/mod.rs` at the root;
//! this is a trimmed copy, since a bin crate cannot be a dependency.)

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::OnceLock;
use std::time::Duration;

const CONFIG: &str = r#"
[log]
level = "info"
format = "json"
[listeners.ws]
bind = "127.0.0.1:0"
[listeners.wss]
bind = "127.0.0.1:0"
[listeners.mqtt]
bind = "127.0.0.1:0"
[listeners.mqtts]
bind = "127.0.0.1:0"
[listeners.stomp]
bind = "127.0.0.1:0"
[listeners.stomps]
bind = "127.0.0.1:0"
[listeners.admin]
bind = "127.0.0.1:0"
"#;

/// The `ferry` binary of this workspace, built once (same profile as the tests).
pub(crate) fn ferry_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../Cargo.toml");
        let mut cmd = Command::new(env!("CARGO"));
        cmd.args(["build", "--quiet", "-p", "ferry", "--bin", "ferry", "--manifest-path"])
            .arg(&manifest);
        if !cfg!(debug_assertions) {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("run cargo build -p ferry");
        assert!(status.success(), "cargo build -p ferry failed");
        // The bench binary sits in the same profile directory as ferry's.
        let dir = PathBuf::from(env!("CARGO_BIN_EXE_ferry-bench"))
            .parent()
            .expect("profile directory")
            .to_path_buf();
        dir.join(format!("ferry{}", std::env::consts::EXE_SUFFIX))
    })
    .clone()
}

/// A running broker.
pub(crate) struct Broker {
    child: Child,
    /// Listener name → address.
    pub addrs: HashMap<String, SocketAddr>,
    _dir: tempfile::TempDir,
}

impl Broker {
    /// Starts `ferry` with every listener on an ephemeral loopback port (the TLS ones
    /// only with `tls`).
    pub(crate) fn start() -> Broker {
        Self::start_inner(None)
    }

    /// Starts `ferry` with TLS listeners too, serving this certificate and key (PEM).
    pub(crate) fn start_tls(cert_pem: &str, key_pem: &str) -> Broker {
        Self::start_inner(Some((cert_pem, key_pem)))
    }

    fn start_inner(tls: Option<(&str, &str)>) -> Broker {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("ferry.toml");
        let mut config = CONFIG.to_string();
        if let Some((cert, key)) = tls {
            let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
            std::fs::write(&cert_path, cert).expect("write cert");
            std::fs::write(&key_path, key).expect("write key");
            config.push_str(&format!("[tls]\ncert_file = {:?}\nkey_file = {:?}\n", cert_path, key_path));
        }
        std::fs::write(&path, config).expect("write config");
        let mut child = Command::new(ferry_bin())
            .arg("--config")
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            // Its own data directory: two brokers cannot share one.
            .env("FERRY_STORAGE__DIR", dir.path().join("data"))
            .spawn()
            .expect("start ferry");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    // Keep draining so the broker never blocks on a full pipe.
                    continue;
                }
            }
        });
        let mut addrs = HashMap::new();
        loop {
            let Ok(line) = rx.recv_timeout(Duration::from_secs(20)) else {
                let _ = child.kill();
                panic!("ferry did not start");
            };
            let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            match v["message"].as_str() {
                Some("listening") => {
                    let name = v["listener"].as_str().unwrap_or_default().trim_matches('"').to_string();
                    if let Some(addr) = v["addr"].as_str().and_then(|a| a.parse().ok()) {
                        addrs.insert(name, addr);
                    }
                }
                Some("ferry started") => break,
                _ => {}
            }
        }
        Broker { child, addrs, _dir: dir }
    }

    /// The address of listener `name`, if it runs.
    pub(crate) fn addr(&self, name: &str) -> Option<SocketAddr> {
        self.addrs.get(name).copied()
    }

    /// The broker's pid.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs ferry-bench with `args` (plus `--json --quiet`) and returns its JSON result.
pub(crate) fn bench(args: &[&str]) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_ferry-bench"))
        .args(args)
        .args(["--json", "--quiet"])
        .stdin(Stdio::null())
        .output()
        .expect("run ferry-bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "ferry-bench {args:?} failed:\n{stderr}");
    let line = stdout
        .lines()
        .last()
        .unwrap_or_else(|| panic!("no output from ferry-bench {args:?}:\n{stderr}"));
    serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}\n{stderr}"))
}
