# Ferry's commands. A newcomer needs two: `make run` and `make test`.
SHELL := /bin/bash
CARGO ?= cargo

.PHONY: run test unit interop autobahn fuzz lint fmt build release

## run: start the broker on its built-in defaults (ws 8083; see README for ports)
run:
	$(CARGO) run --release -p ferry

## test: everything — lint, unit and end-to-end tests, interop with real clients, Autobahn
test: lint unit interop autobahn

## unit: unit tests beside the code and end-to-end tests in tests/ (they run target/<profile>/ferry)
unit:
	$(CARGO) build -p ferry
	$(CARGO) test --workspace --all-targets

INTEROP := tests/interop
VENV := $(INTEROP)/.venv

## interop: MQTT.js and stompjs (node --test), paho-mqtt and stomp.py (pytest)
interop: $(INTEROP)/node_modules/.installed $(VENV)/.installed
	$(CARGO) build -p ferry
	node --test $(INTEROP)/js/
	$(VENV)/bin/pytest -q $(INTEROP)/py

$(INTEROP)/node_modules/.installed: $(INTEROP)/package.json $(INTEROP)/package-lock.json
	cd $(INTEROP) && npm ci --no-audit --no-fund
	touch $@

$(VENV)/.installed: $(INTEROP)/requirements.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q -r $(INTEROP)/requirements.txt
	touch $@

## autobahn: the WebSocket conformance gate (installs wstest on first use)
autobahn:
	bash autobahn/run.sh

FUZZ_SECONDS ?= 60

## fuzz: every cargo-fuzz target (the MQTT and STOMP decoders, the WebSocket frames, a session), FUZZ_SECONDS each (default 60)
fuzz:
	bash fuzz/run.sh all $(FUZZ_SECONDS)

## lint: formatting and clippy, warnings are errors
lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

## fmt: format the code
fmt:
	$(CARGO) fmt --all

build:
	$(CARGO) build --workspace

release:
	$(CARGO) build --release -p ferry

## bench: Ferry against a reference Mosquitto with ferry-bench (not part of test; ~33 min; see bench/run.sh)
.PHONY: bench
bench:
	bash bench/run.sh
