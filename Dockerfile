# syntax=docker/dockerfile:1
#
# authgate container image (see deploy/README.md).
#
#   docker build -t authgate:dev .
#   docker run --rm -p 8443:8443 -p 9090:9090 \
#     -v "$PWD/authgate.toml:/etc/authgate/authgate.toml:ro" \
#     -v "$PWD/certs:/etc/authgate/certs:ro" \
#     authgate:dev
#
# Paths inside the image:
#   /usr/local/bin/authgate         the binary
#   /etc/authgate/authgate.toml     the configuration (mount it; none is baked in)
#   /etc/authgate/certs/            certificates named by tls.cert / tls.key (mount them)
#   /var/lib/authgate               working directory and data (SQLite store)
#
# Relative paths in the configuration (tls.cert, tls.key, upstream.ca_file, a
# `sqlite://` store.url) resolve against the WORKING DIRECTORY, not against the config
# file's directory. Here that is /var/lib/authgate, so the default
# store.url = "sqlite://data/authgate.db" lands in /var/lib/authgate/data/authgate.db,
# and the default tls.cert "certs/dev-cert.pem" would mean
# /var/lib/authgate/certs/dev-cert.pem. In a container, write absolute paths:
#   [tls]   cert = "/etc/authgate/certs/tls.crt"   key = "/etc/authgate/certs/tls.key"
#   [store] url  = "sqlite:///var/lib/authgate/authgate.db"   (or postgres://…)
#
# Listen addresses: the shipped config/authgate.toml binds 127.0.0.1, which nothing
# outside the container can reach. Bind 0.0.0.0 in the mounted file (or with
# AUTHGATE_SERVER__HTTPS=0.0.0.0:8443 and AUTHGATE_METRICS__LISTEN=0.0.0.0:9090).

# ---------------------------------------------------------------------------------------
FROM rust:1-bookworm AS build
WORKDIR /src

# Dependencies first, in a layer of their own that is rebuilt only when Cargo.toml or
# Cargo.lock change: build them against stub sources. The three [[bench]] targets that
# Cargo.toml declares must exist for the manifest to load, so they get stubs too.
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src benches \
 && echo 'fn main() {}' > src/main.rs \
 && touch src/lib.rs \
 && for b in gateway hot_path memory; do echo 'fn main() {}' > "benches/$b.rs"; done \
 && cargo build --release --locked \
 && rm -rf src benches

# The real sources (migrations/ is embedded by sqlx::migrate! at compile time). The
# touch makes the real crate newer than the stub build, whatever mtimes COPY kept.
COPY . .
RUN touch src/main.rs src/lib.rs \
 && cargo build --release --locked \
 && install -D -m 0755 target/release/authgate /out/usr/local/bin/authgate \
 && mkdir -p /out/var/lib/authgate

# ---------------------------------------------------------------------------------------
# glibc, libgcc and CA certificates (rustls-native-certs reads /etc/ssl/certs for
# https:// upstreams and TLS to PostgreSQL); no shell, no package manager.
FROM gcr.io/distroless/cc-debian12:nonroot

COPY --from=build /out/usr/local/bin/authgate /usr/local/bin/authgate
# The data directory belongs to the runtime user (65532, "nonroot"): SQLite creates its
# file and WAL here (and its temporary files, when /tmp is read-only). Copying the
# parent makes authgate/ a copied directory, so --chown covers the directory itself.
COPY --from=build --chown=65532:65532 /out/var/lib/ /var/lib/

# Numeric, so Kubernetes' runAsNonRoot can check it.
USER 65532:65532
WORKDIR /var/lib/authgate

# Only the data directory is a VOLUME. The configuration and certificates are
# bind-mounted (docker) or mounted from a ConfigMap/Secret (Kubernetes) at the paths
# above; an image VOLUME at /etc/authgate/certs would add nothing to a bind mount, and
# under containerd it can be mounted over a Kubernetes volume that covers /etc/authgate.
VOLUME ["/var/lib/authgate"]

# 8443: HTTPS (server.https). 9090: the plain-HTTP operations listener
# ([metrics] listen: /metrics, /healthz, /readyz).
EXPOSE 8443 9090

# authgate stops accepting on SIGTERM and lets in-flight requests finish for up to
# server.shutdown_grace (30s by default): give `docker stop -t` / compose
# stop_grace_period / Kubernetes terminationGracePeriodSeconds more than that.
STOPSIGNAL SIGTERM

# No shell or curl in the image: the binary probes itself. `authgate healthcheck --url`
# GETs /healthz and exits 0 on 200, 1 otherwise, without reading the configuration (so a
# file being edited, or secrets only the server's environment has, cannot make the
# probe fail). The URL assumes `[metrics] listen` on port 9090, as in deploy/; without
# --url it is derived from the mounted configuration (metrics.listen, else server.http).
# Kubernetes ignores HEALTHCHECK; use the httpGet probes of deploy/kubernetes/sidecar.yaml.
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 \
  CMD ["/usr/local/bin/authgate", "healthcheck", "--url", "http://127.0.0.1:9090/healthz"]

# --config is a global option: it may come before the subcommand, so any command can be
# given as arguments (`docker run … authgate:dev check-config`, `… client list`). Because
# it is on the command line, it wins over AUTHGATE_CONFIG; to use another file, mount it
# at this path or override the entrypoint.
ENTRYPOINT ["/usr/local/bin/authgate", "--config", "/etc/authgate/authgate.toml"]
CMD ["serve"]
