//! The `ferry` command line: running without a file, `check-config`, and refusals of
//! unknown keys and bad values naming the key.

mod common;

use std::time::Duration;

use common::*;

fn conf() -> String {
    format!("{}/../../conf/ferry.toml", env!("CARGO_MANIFEST_DIR"))
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
    // Built-in defaults, with the ports moved to loopback by environment only.
    let mut child = std::process::Command::new(ferry_bin())
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
