//! The `ferry` command line: running without a file, `check-config`, and refusals of
//! unknown keys and bad values naming the key.

use std::time::Duration;

use ferry_testkit::prelude::*;

fn conf() -> String {
    format!("{}/../conf/ferry.toml", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn check_config_prints_the_effective_configuration() {
    let (status, stdout, stderr) = ferry_command(&["check-config", &conf()], &[]);
    assert!(status.success(), "{stderr}");
    assert!(stdout.contains("[listeners.ws]"), "{stdout}");
    assert!(stdout.contains("bind = \"0.0.0.0:8083\""), "{stdout}");
    assert!(stderr.contains("is valid"));
}

#[test]
fn environment_overrides_show_in_check_config() {
    let (status, stdout, _) = ferry_command(
        &["check-config", &conf()],
        &[("FERRY_WEBSOCKET__MAX_MESSAGE_SIZE", "4096"), ("FERRY_LOG__FORMAT", "json")],
    );
    assert!(status.success());
    assert!(stdout.contains("max_message_size = 4096"), "{stdout}");
    assert!(stdout.contains("format = \"json\""), "{stdout}");
}

#[test]
fn unknown_keys_and_bad_values_are_refused_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    for (toml, env, key) in [
        ("[websocket]\nmax_mesage_size = 1\n", None, "max_mesage_size"),
        ("[websocket]\nmax_message_size = \"lots\"\n", None, "websocket.max_message_size"),
        ("[listeners.ws]\nbind = \"not an address\"\n", None, "listeners.ws.bind"),
        ("", Some(("FERRY_HTTP__NOPE", "1")), "nope"),
    ] {
        let path = write_file(dir.path(), "ferry.toml", toml);
        let env: Vec<(&str, &str)> = env.into_iter().collect();
        let (status, _, stderr) = ferry_command(&["check-config", path.to_str().unwrap()], &env);
        assert_eq!(status.code(), Some(1), "{toml}");
        assert!(stderr.contains(key), "{toml}: {stderr}");
        let (status, _, stderr) = ferry_command(&["--config", path.to_str().unwrap()], &env);
        assert_eq!(status.code(), Some(1), "the broker refuses to start too: {stderr}");
    }
}

#[test]
fn runs_without_a_configuration_file() {
    // Built-in defaults, with the ports moved to loopback by environment only, and the
    // data directory in a temporary one.
    let data = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(ferry_bin())
        .env("FERRY_STORAGE__DIR", data.path().join("data"))
        .envs([
            ("FERRY_LISTENERS__WS__BIND", "127.0.0.1:0"),
            ("FERRY_LISTENERS__WSS__ENABLED", "false"),
            ("FERRY_LISTENERS__MQTT__ENABLED", "false"),
            ("FERRY_LISTENERS__MQTTS__ENABLED", "false"),
            ("FERRY_LISTENERS__STOMP__ENABLED", "false"),
            ("FERRY_LISTENERS__STOMPS__ENABLED", "false"),
            ("FERRY_LOG__FORMAT", "json"),
        ])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
            .find(|l| l.contains("ferry started"))
    });
    let started = reader.join().unwrap();
    std::thread::sleep(Duration::from_millis(50));
    let _ = std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let status = child.wait().unwrap();
    assert!(started.is_some());
    assert!(status.success(), "SIGTERM exits 0: {status:?}");
}

/// Runs `ferry passwd ARGS` with `stdin` as its standard input.
fn passwd(args: &[&str], stdin: &str) -> (std::process::ExitStatus, String) {
    use std::io::Write;
    let mut child = std::process::Command::new(ferry_bin())
        .arg("passwd")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    (out.status, String::from_utf8_lossy(&out.stderr).into())
}

#[test]
fn passwd_adds_updates_and_removes_users() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("passwd");
    let path = file.to_str().unwrap();
    let (status, err) = passwd(&[path, "alice"], "wonderland\n");
    assert!(status.success(), "{err}");
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.starts_with("alice:$argon2id$"), "{text}");
    assert!(!text.contains("wonderland"));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);

    let (status, err) = passwd(&[path, "bob"], "builder\n");
    assert!(status.success(), "{err}");
    let (status, err) = passwd(&[path, "alice"], "looking-glass\n");
    assert!(status.success(), "{err}");
    let text = std::fs::read_to_string(&file).unwrap();
    assert_eq!(text.lines().count(), 2, "{text}");

    let (status, err) = passwd(&["-D", path, "alice"], "");
    assert!(status.success(), "{err}");
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.starts_with("bob:") && !text.contains("alice"), "{text}");
    let (status, err) = passwd(&["-D", path, "alice"], "");
    assert!(!status.success() && err.contains("alice is not in"), "{err}");
    let (status, err) = passwd(&[path, "carol"], "\n");
    assert!(!status.success() && err.contains("empty password"), "{err}");
    let (status, err) = passwd(&[path, "bad:name"], "x\n");
    assert!(!status.success(), "{err}");
}

#[test]
fn unusable_auth_files_stop_the_start_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let acl = write_file(dir.path(), "acl", "user alice\ntopic sideways x/#\n");
    let (status, _, err) = ferry_command(&["check-config", &conf()], &[("FERRY_AUTH__ACL_FILE", acl.to_str().unwrap())]);
    assert!(!status.success());
    assert!(err.contains("acl") && err.contains("line 2"), "{err}");
    let (status, _, err) = ferry_command(&["check-config", &conf()], &[("FERRY_AUTH__PASSWORD_FILE", "/nonexistent/passwd")]);
    assert!(!status.success() && err.contains("/nonexistent/passwd"), "{err}");
}

#[test]
fn sighup_and_file_changes_reload_the_auth_files() {
    let dir = tempfile::tempdir().unwrap();
    // A light argon2id hash of "wonderland" (64 KiB, 1 pass): quick in debug builds.
    let hash = "$argon2id$v=19$m=64,t=1,p=1$m+nUt0+Sn2RB1Hqz+eRs6Q$DTSRZtaBT1TdxSIz00jXXMyTX8d93EzvZaSrDn+u1nI";
    let users = write_file(dir.path(), "passwd", &format!("alice:{hash}\n"));
    let acl = write_file(dir.path(), "acl", "user alice\ntopic readwrite alice/#\n");
    let extra = format!(
        "[auth]\npassword_file = {:?}\nacl_file = {:?}\nwatch_files = true\nwatch_interval = \"200ms\"\n",
        users.to_str().unwrap(),
        acl.to_str().unwrap()
    );
    let broker = Broker::start(&extra);
    assert!(
        broker.wait_log("1 users, 1 ACL rules", Duration::from_secs(5)),
        "{:?}",
        broker.logs()
    );

    std::fs::write(&users, format!("alice:{hash}\nbob:{hash}\n")).unwrap();
    broker.signal_hup();
    assert!(
        broker.wait_log("2 users, 1 ACL rules", Duration::from_secs(10)),
        "{:?}",
        broker.logs()
    );

    // A broken file is refused; the previous one stays in force.
    std::fs::write(&acl, "user alice\ntopic sideways x\n").unwrap();
    broker.signal_hup();
    assert!(broker.wait_log("not reloaded", Duration::from_secs(10)), "{:?}", broker.logs());

    // With watch_files, a change is picked up without a signal.
    std::fs::write(&acl, "user alice\ntopic readwrite alice/#\ntopic read public/#\n").unwrap();
    assert!(
        broker.wait_log("2 users, 2 ACL rules", Duration::from_secs(10)),
        "{:?}",
        broker.logs()
    );
}
