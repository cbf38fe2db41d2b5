# syntax=docker/dockerfile:1
#
# The Vivified core. The image runs `vivified serve` — the CLI's start-up, which is the
# vivified-server binary's (same settings, same Application::build) — on distroless, as
# a non-root user, in production mode. No secret is baked in: JWT_SECRET,
# VIVIFIED_ADMIN_TOKEN, VIVIFIED_REGISTRATION_SECRET and VIVIFIED_AUDIT_KEY come from
# the environment at run time (docker-compose.yml reads them from .env; k8s/ from a
# Secret).
#
#   docker build -t vivified/core .
#
# The store defaults to SQLite in /var/lib/vivified (mount a volume there) unless
# DATABASE_URL or VIVIFIED_STORE says otherwise. See docs/operations.md.

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-slim-bookworm AS build
WORKDIR /src
COPY . .
# The bundled SQLite is compiled with the image's gcc; nothing else is installed.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked -p vivified-cli --bin vivified \
 && install -D -m 0755 target/release/vivified /out/bin/vivified \
 && install -d -m 0700 /out/lib/vivified

FROM gcr.io/distroless/cc-debian12:nonroot AS runtime
COPY --from=build /out/bin/vivified /usr/local/bin/vivified
# Copies the directory `vivified` into /var/lib, owned by the runtime user.
COPY --from=build --chown=65532:65532 /out/lib/ /var/lib/
USER 65532:65532
WORKDIR /var/lib/vivified
# HTTPS on 0.0.0.0 (production refuses plain HTTP there): mount a directory at
# /etc/vivified/tls with tls.crt (SAN `localhost` among its names), tls.key (readable
# by UID 65532) and ca.crt (the CA that signed tls.crt, for the health check). Behind a
# TLS-terminating proxy instead: VIVIFIED_TLS_CERT= VIVIFIED_TLS_KEY= (empty is unset)
# and VIVIFIED_TLS_TERMINATED_BY_PROXY=true, and a health check over http://.
ENV VIVIFIED_MODE=production \
    VIVIFIED_BIND=0.0.0.0:8000 \
    VIVIFIED_TLS_CERT=/etc/vivified/tls/tls.crt \
    VIVIFIED_TLS_KEY=/etc/vivified/tls/tls.key \
    VIVIFIED_DATA_DIR=/var/lib/vivified \
    VIVIFIED_LOG_FORMAT=json
EXPOSE 8000
# No curl in the image: the binary probes itself over HTTPS. 0 healthy, 1 unhealthy.
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["/usr/local/bin/vivified", "healthcheck", "--url", "https://localhost:8000/health", "--ca-cert", "/etc/vivified/tls/ca.crt", "--timeout", "3s"]
ENTRYPOINT ["/usr/local/bin/vivified"]
CMD ["serve"]
