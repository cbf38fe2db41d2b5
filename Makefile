# Developer and operator shortcuts. Every target is one cargo or docker compose call
# (or a few); CI runs the same commands through .ci/run and .github/workflows/ci.yml.
#
#   make build     release build of every binary (vivified, vivified-server, the plugin)
#   make up        build the images and start the compose stack (needs .env)
#   make down      stop the stack (volumes are kept; `docker compose down -v` drops them)
#   make test      the whole test suite
#   make lint      rustfmt, clippy (warnings are errors), and cargo-deny when installed
#   make proto     check the canonical protobuf models compile (after issue 6)
#   make bench     criterion benchmarks of the domain and the stores
#   make clean     remove build output

CARGO ?= cargo
COMPOSE ?= docker compose

.PHONY: build up down test lint proto bench clean

build:
	$(CARGO) build --workspace --release --locked

up: .env
	$(COMPOSE) up -d --build --wait

.env:
	@echo "no .env: copy .env.example to .env and fill in every secret (see docs/operations.md)" >&2
	@exit 1

down:
	$(COMPOSE) down

test:
	$(CARGO) test --workspace --locked

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings
	@if $(CARGO) deny --version >/dev/null 2>&1; then \
		$(CARGO) deny --all-features check advisories licenses sources && \
		$(CARGO) deny --all-features --exclude-dev check bans; \
	else \
		echo "cargo-deny is not installed (cargo install --locked cargo-deny); skipped here, CI runs it"; \
	fi

# The generated code will live in its own crate (prost + protox, no system protoc), which
# issue 6 adds; until then there is nothing to generate and this says so.
proto:
	@if $(CARGO) metadata --format-version 1 --no-deps --offline 2>/dev/null | grep -q '"name":"vivified-proto"'; then \
		$(CARGO) build -p vivified-proto --locked; \
	else \
		echo "proto/: no vivified-proto crate yet (issue 6); proto/canonical_models.proto is not compiled" >&2; \
		exit 1; \
	fi

bench:
	$(CARGO) bench -p vivified-domain --bench domain
	$(CARGO) bench -p vivified-adapters --bench store

clean:
	$(CARGO) clean
