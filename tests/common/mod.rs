//! Test harness: starts the real `ferry` binary on ephemeral loopback ports, reads its
//! JSON logs to learn the ports, and talks raw HTTP/WebSocket to it. Every process it
//! starts is killed when its `Broker` is dropped.

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Configuration that puts every listener on an ephemeral loopback port.
pub(crate) const LOOPBACK: &str = r#"
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
pub(crate) struct Broker {
    child: Option<Child>,
    /// Listener name → bound address, from the `listening` log lines.
    pub addrs: HashMap<String, SocketAddr>,
    logs: Arc<Mutex<Vec<String>>>,
    _dir: tempfile::TempDir,
}

pub(crate) fn ferry_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_ferry"))
}

impl Broker {
    /// Start with [`LOOPBACK`] followed by `extra` TOML (later keys of a table win, so
    /// `extra` may only add sections or keys not in LOOPBACK: use `env` to override).
    pub(crate) fn start(extra: &str) -> Broker {
        Self::start_with(extra, &[])
    }

    /// Start with extra TOML and `FERRY_*` environment overrides.
    pub(crate) fn start_with(extra: &str, env: &[(&str, &str)]) -> Broker {
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
    pub(crate) fn addr(&self, name: &str) -> SocketAddr {
        *self
            .addrs
            .get(name)
            .unwrap_or_else(|| panic!("listener {name} not running: {:?}", self.addrs))
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// Log lines so far.
    pub(crate) fn logs(&self) -> Vec<String> {
        self.logs.lock().unwrap().clone()
    }

    /// Wait until a log line contains `needle`.
    pub(crate) fn wait_log(&self, needle: &str, timeout: Duration) -> bool {
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
    pub(crate) fn signal_term(&self) {
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid().to_string())
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// Kill the process with SIGKILL and reap it: no shutdown of any kind runs.
    pub(crate) fn kill_9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Send SIGHUP (reload the auth files).
    pub(crate) fn signal_hup(&self) {
        let status = Command::new("kill").arg("-HUP").arg(self.pid().to_string()).status().expect("kill");
        assert!(status.success());
    }

    /// Wait for the process to exit, up to `timeout`.
    pub(crate) fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
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
    pub(crate) fn fd_count(&self) -> usize {
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
pub(crate) fn ferry_command(args: &[&str], env: &[(&str, &str)]) -> (ExitStatus, String, String) {
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

pub(crate) fn write_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// A raw HTTP response: status code, lower-cased headers, body.
#[derive(Debug)]
pub(crate) struct RawResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl RawResponse {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// Send `request` verbatim and read one response (head, and a body of
/// `content-length` bytes). Leaves the stream open for the caller (frames after a 101).
pub(crate) async fn http_raw(stream: &mut TcpStream, request: &str) -> RawResponse {
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let mut chunk = [0u8; 1];
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut chunk))
            .await
            .expect("response in time")
            .unwrap();
        assert!(n > 0, "connection closed before a response: {:?}", String::from_utf8_lossy(&buf));
        buf.push(chunk[0]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .map(|(_, v)| v.parse().unwrap())
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body).await.unwrap();
    RawResponse {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into(),
    }
}

/// Connect and send one request; convenience for status checks.
pub(crate) async fn http_request(addr: SocketAddr, request: &str) -> RawResponse {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    http_raw(&mut stream, request).await
}

/// A WebSocket upgrade request for `path` with extra header lines.
pub(crate) fn upgrade_request(path: &str, extra: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
}

/// A masked client frame (RFC 6455 §5.2), built here independently of the server.
pub(crate) fn client_frame(fin: bool, opcode: u8, payload: &[u8], masked: bool) -> Vec<u8> {
    let mut f = vec![(if fin { 0x80 } else { 0 }) | opcode];
    let mask_bit = if masked { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => f.push(mask_bit | n as u8),
        n if n < 65536 => {
            f.push(mask_bit | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(mask_bit | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    if masked {
        let key = [0x37, 0xfa, 0x21, 0x3d];
        f.extend_from_slice(&key);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    } else {
        f.extend_from_slice(payload);
    }
    f
}

/// A frame read from the server: (fin, opcode, payload). `None` on EOF.
pub(crate) async fn read_server_frame(stream: &mut TcpStream) -> Option<(bool, u8, Vec<u8>)> {
    let mut head = [0u8; 2];
    stream.read_exact(&mut head).await.ok()?;
    assert_eq!(head[1] & 0x80, 0, "server frames must not be masked");
    let len = match head[1] & 0x7f {
        126 => {
            let mut b = [0u8; 2];
            stream.read_exact(&mut b).await.ok()?;
            u16::from_be_bytes(b) as usize
        }
        127 => {
            let mut b = [0u8; 8];
            stream.read_exact(&mut b).await.ok()?;
            u64::from_be_bytes(b) as usize
        }
        n => n as usize,
    };
    let mut payload = vec![0u8; len];
    stream.read_exact(&mut payload).await.ok()?;
    Some((head[0] & 0x80 != 0, head[0] & 0x0f, payload))
}

/// Read frames until a close frame; returns its code. Panics on timeout.
pub(crate) async fn expect_close(stream: &mut TcpStream) -> Option<u16> {
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match read_server_frame(stream).await {
                Some((_, 0x8, p)) if p.len() >= 2 => return Some(u16::from_be_bytes([p[0], p[1]])),
                Some((_, 0x8, _)) => return None,
                Some(_) => continue,
                None => panic!("connection ended without a close frame"),
            }
        }
    })
    .await
    .expect("close frame in time")
}

/// Whether the server closes the TCP connection within `timeout`.
pub(crate) async fn closed_within(stream: &mut TcpStream, timeout: Duration) -> bool {
    let mut buf = [0u8; 1024];
    tokio::time::timeout(timeout, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => continue,
            }
        }
    })
    .await
    .is_ok()
}

/// Fetch `/metrics` and return the value of a sample line starting with `name`.
pub(crate) async fn metric(addr: SocketAddr, name: &str) -> Option<f64> {
    let resp = http_request(addr, "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await;
    resp.body
        .lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}
