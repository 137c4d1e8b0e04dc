# Ferry's commands. A newcomer needs two: `make run` and `make test`.
SHELL := /bin/bash
CARGO ?= cargo

.PHONY: run test unit autobahn lint fmt build release

## run: start the broker on its built-in defaults (ws 8083; see README for ports)
run:
	$(CARGO) run --release -p ferry

## test: everything — lint, unit and end-to-end tests, the Autobahn TestSuite
test: lint unit autobahn

## unit: unit tests beside the code and end-to-end tests in tests/
unit:
	$(CARGO) test --workspace --all-targets

## autobahn: the WebSocket conformance gate (installs wstest on first use)
autobahn:
	bash autobahn/run.sh

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
