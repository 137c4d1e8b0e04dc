//! The broker process harness: starts the real `ferry` binary on ephemeral loopback
//! ports, reads its JSON logs to learn the ports and to know it is ready, signals it,
//! and kills it when its [`Broker`] is dropped.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Configuration that puts every listener on an ephemeral loopback port.
pub const LOOPBACK: &str = r#"
[log]
level = "debug"
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
# No $SYS unless a test asks for it (FERRY_ADMIN__SYS_INTERVAL): its retained topics
# would count in the tests' figures and retained limits.
[admin]
sys_interval = "0s"
"#;

/// A running broker process.
pub struct Broker {
    child: Option<Child>,
    /// Listener name → bound address, from the `listening` log lines.
    pub addrs: HashMap<String, SocketAddr>,
    logs: Arc<Mutex<Vec<String>>>,
    _dir: tempfile::TempDir,
}

/// The workspace's `ferry` binary, built once per test process (`cargo build -p ferry`,
/// in the profile of the tests) and found in the profile directory above the test
/// executable (`target/<profile>/deps/<test>` → `target/<profile>/ferry`).
/// `CARGO_BIN_EXE_ferry` exists only for the `ferry` package's own tests; this works
/// for any package's.
pub fn ferry_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../Cargo.toml");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "--quiet", "-p", "ferry", "--bin", "ferry", "--manifest-path"])
            .arg(&manifest);
        if !cfg!(debug_assertions) {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("run cargo build -p ferry");
        assert!(status.success(), "cargo build -p ferry failed");
        let exe = std::env::current_exe().expect("the test executable");
        let profile = exe
            .parent()
            .and_then(Path::parent)
            .expect("the profile directory above the test executable");
        let bin = profile.join(format!("ferry{}", std::env::consts::EXE_SUFFIX));
        assert!(bin.is_file(), "no ferry binary at {}", bin.display());
        bin
    })
    .clone()
}

impl Broker {
    /// Start with [`LOOPBACK`] followed by `extra` TOML (later keys of a table win, so
    /// `extra` may only add sections or keys not in LOOPBACK: use `env` to override).
    pub fn start(extra: &str) -> Broker {
        Self::start_with(extra, &[])
    }

    /// Start with extra TOML and `FERRY_*` environment overrides.
    pub fn start_with(extra: &str, env: &[(&str, &str)]) -> Broker {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("ferry.toml");
        std::fs::write(&path, format!("{LOOPBACK}\n{extra}")).expect("write config");
        let mut cmd = Command::new(ferry_bin());
        cmd.arg("--config")
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        // Each broker keeps its data in its own temporary directory (two brokers on
        // one directory: the second refuses to start); a test that restarts a broker
        // on the same data passes FERRY_STORAGE__DIR itself.
        cmd.env("FERRY_STORAGE__DIR", dir.path().join("data"));
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start ferry");
        let stderr = child.stderr.take().expect("stderr");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let sink = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line.clone());
                sink.lock().unwrap().push(line);
            }
        });
        let mut addrs = HashMap::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match rx.recv_timeout(left) {
                Ok(line) => line,
                Err(_) => {
                    let _ = child.kill();
                    panic!("ferry did not start: {:?}", logs.lock().unwrap());
                }
            };
            let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            match v["message"].as_str() {
                Some("listening") => {
                    let name = v["listener"].as_str().unwrap().trim_matches('"').to_string();
                    addrs.insert(name, v["addr"].as_str().unwrap().parse().unwrap());
                }
                Some("ferry started") => break,
                _ => {}
            }
        }
        Broker {
            child: Some(child),
            addrs,
            logs,
            _dir: dir,
        }
    }

    /// The address of listener `name`.
    pub fn addr(&self, name: &str) -> SocketAddr {
        *self
            .addrs
            .get(name)
            .unwrap_or_else(|| panic!("listener {name} not running: {:?}", self.addrs))
    }

    /// The address of listener `name`, if it runs.
    pub fn try_addr(&self, name: &str) -> Option<SocketAddr> {
        self.addrs.get(name).copied()
    }

    /// The broker's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// Log lines so far.
    pub fn logs(&self) -> Vec<String> {
        self.logs.lock().unwrap().clone()
    }

    /// Wait until a log line contains `needle`.
    pub fn wait_log(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.logs().iter().any(|l| l.contains(needle)) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Send SIGTERM (without waiting).
    pub fn signal_term(&self) {
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid().to_string())
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// Kill the process with SIGKILL and reap it: no shutdown of any kind runs.
    pub fn kill_9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Send SIGHUP (reload the auth files).
    pub fn signal_hup(&self) {
        let status = Command::new("kill").arg("-HUP").arg(self.pid().to_string()).status().expect("kill");
        assert!(status.success());
    }

    /// Wait for the process to exit, up to `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        let child = self.child.as_mut().unwrap();
        while Instant::now() < deadline {
            if let Some(status) = child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Open file descriptors of the broker process.
    pub fn fd_count(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .map(|d| d.count())
            .unwrap_or(0)
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Run `ferry` with arguments to completion; returns (status, stdout, stderr). A broker
/// it starts keeps its data in a temporary directory unless `env` names one.
pub fn ferry_command(args: &[&str], env: &[(&str, &str)]) -> (ExitStatus, String, String) {
    let data = tempfile::tempdir().expect("temp dir");
    let mut cmd = Command::new(ferry_bin());
    cmd.args(args).stdin(Stdio::null());
    cmd.env("FERRY_STORAGE__DIR", data.path().join("data"));
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run ferry");
    (
        out.status,
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// Write `text` to `dir/name` and return the path.
pub fn write_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}
