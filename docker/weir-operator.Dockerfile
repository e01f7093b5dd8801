# syntax=docker/dockerfile:1.7
#
# The Weir operator image: the `weir-operator` binary. Build from the repository root:
#
#   docker build -f docker/weir-operator.Dockerfile -t ghcr.io/weir/weir-operator:0.1.0 .

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

# ---------------------------------------------------------------- builder
FROM rust:${RUST_VERSION}-${DEBIAN_RELEASE} AS builder
# The TLS stack of the Kubernetes client may build C code (aws-lc-sys / ring):
# clang and cmake are enough for either.
RUN apt-get update \
 && apt-get install -y --no-install-recommends clang cmake \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN --mount=type=cache,id=weir-cargo-registry,target=/usr/local/cargo/registry \
    --mount=type=cache,id=weir-cargo-git,target=/usr/local/cargo/git \
    --mount=type=cache,id=weir-target-operator,target=/src/target \
    cargo build --release --locked -p weir-operator \
 && install -D -m 0755 target/release/weir-operator /out/weir-operator

# ---------------------------------------------------------------- runtime
# distroless/cc: glibc, libgcc, CA certificates, no shell, no package manager.
# The :nonroot tag runs as uid/gid 65532.
FROM gcr.io/distroless/cc-debian12:nonroot AS runtime
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="weir-operator" \
      org.opencontainers.image.description="Kubernetes operator for Weir StreamJobs" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=builder /out/weir-operator /usr/local/bin/weir-operator
# The operator writes nothing to disk: it runs with a read-only root filesystem
# and needs no volume (a /tmp emptyDir is mounted by the chart all the same).
USER 65532:65532
# 8080: /healthz, /readyz and /metrics.
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/weir-operator"]
