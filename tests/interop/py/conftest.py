"""Starts the real ferry binary on ephemeral loopback ports for the Python interop
tests, reading its JSON log lines to learn them; stops it after each test."""

import json
import os
import subprocess
import tempfile
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
BIN = os.environ.get("FERRY_TEST_BIN", str(Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "debug" / "ferry"))
LISTENERS = "".join(
    f'[listeners.{name}]\nbind = "127.0.0.1:0"\n' for name in ("ws", "wss", "mqtt", "mqtts", "stomp", "stomps", "admin")
)


class Broker:
    """A running broker: `addrs` maps listener names to (host, port)."""

    def __init__(self, extra_toml="", data_dir=None):
        self.dir = tempfile.TemporaryDirectory()
        config = Path(self.dir.name) / "ferry.toml"
        config.write_text(f'[log]\nlevel = "info"\nformat = "json"\n{LISTENERS}{extra_toml}')
        # Each broker keeps its data in its own temporary directory, unless a test
        # restarts one on the same data (data_dir).
        env = dict(os.environ, FERRY_STORAGE__DIR=str(data_dir or Path(self.dir.name) / "data"))
        self.proc = subprocess.Popen([BIN, "--config", str(config)], stdin=subprocess.DEVNULL, env=env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.addrs = {}
        started = threading.Event()

        def read():
            for line in self.proc.stderr:
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue
                if entry.get("message") == "listening":
                    host, port = entry["addr"].rsplit(":", 1)
                    self.addrs[entry["listener"].strip('"')] = (host, int(port))
                elif entry.get("message") == "ferry started":
                    started.set()

        threading.Thread(target=read, daemon=True).start()
        if not started.wait(20):
            self.stop()
            raise RuntimeError("ferry did not start")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.dir.cleanup()


@pytest.fixture
def broker():
    b = Broker()
    yield b
    b.stop()
