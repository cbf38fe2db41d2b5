# Developer and operator shortcuts. Every target is one cargo or docker compose call
# (or a few); CI runs the same commands through .ci/run and .github/workflows/ci.yml.
#
#   make build     release build of every binary (vivified, vivified-server, the plugin)
#   make up        build the images and start the compose stack (needs .env)
#   make down      stop the stack (volumes are kept; `docker compose down -v` drops them)
#   make test      the whole test suite
#   make lint      rustfmt, clippy (warnings are errors), and cargo-deny when installed
#   make proto     regenerate the checked-in protobuf code (proto/src/generated/)
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

# Regenerates proto/src/generated/ from proto/canonical_models.proto with protox and
# prost-build (no system protoc; dev-dependencies of vivified-proto only). Without the
# variable the same test only checks that the checked-in code is not stale.
proto:
	VIVIFIED_REGENERATE_PROTO=1 $(CARGO) test -p vivified-proto --locked --test generated_code

bench:
	$(CARGO) bench -p vivified-domain --bench domain
	$(CARGO) bench -p vivified-adapters --bench store

clean:
	$(CARGO) clean
