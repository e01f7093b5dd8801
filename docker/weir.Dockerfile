# syntax=docker/dockerfile:1.7
#
# The Weir runtime image: the `weir` binary (`weir worker` in a StreamJob's pods,
# `weir run` for embedded runs). Build from the repository root:
#
#   docker build -f docker/weir.Dockerfile -t ghcr.io/weir/weir:0.1.0 .
#
# See docker/README.md for the layout and for building a custom job image on top.

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

# ---------------------------------------------------------------- builder
FROM rust:${RUST_VERSION}-${DEBIAN_RELEASE} AS builder
# The RocksDB state backend links Debian's librocksdb (librocksdb-dev; see
# .cargo/config.toml); its bindings are generated with bindgen (clang, libclang);
# cmake covers crates that build C code with it.
RUN apt-get update \
 && apt-get install -y --no-install-recommends clang libclang-dev cmake librocksdb-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# Cache mounts keep the registry and the target dir (the RocksDB C++ build takes
# 12-15 min on 2 cores) between builds; the binary is copied out of the cache.
RUN --mount=type=cache,id=weir-cargo-registry,target=/usr/local/cargo/registry \
    --mount=type=cache,id=weir-cargo-git,target=/usr/local/cargo/git \
    --mount=type=cache,id=weir-target-runtime,target=/src/target \
    cargo build --release --locked -p weir-cli --bin weir \
 && install -D -m 0755 target/release/weir /out/weir

# ---------------------------------------------------------------- runtime
FROM debian:${DEBIAN_RELEASE}-slim AS runtime
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="weir" \
      org.opencontainers.image.description="Weir stream-processing runtime" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"
# ca-certificates: TLS to object storage (s3://, gs://, az://).
# libstdc++6 and librocksdb7.8: the RocksDB state backend (C++, linked dynamically).
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libstdc++6 librocksdb7.8 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 65532 weir \
 && useradd --uid 65532 --gid 65532 --no-create-home --home-dir /var/lib/weir \
            --shell /usr/sbin/nologin weir \
 && install -d -o 65532 -g 65532 -m 0750 /var/lib/weir \
 && install -d -o 65532 -g 65532 -m 0755 /etc/weir
COPY --from=builder /out/weir /usr/local/bin/weir

# The root filesystem can be mounted read-only: everything the runtime writes
# goes to WEIR_STATE_DIR (local RocksDB state; an emptyDir or a PVC) and TMPDIR
# (an emptyDir). The job definition is mounted read-only at /etc/weir/job.yaml.
ENV WEIR_STATE_DIR=/var/lib/weir \
    TMPDIR=/tmp \
    HOME=/var/lib/weir
WORKDIR /var/lib/weir
# Numeric user so that Kubernetes' runAsNonRoot can verify it.
USER 65532:65532
# 6121: data exchange between the pods of a job; 8081: health, metrics, REST API.
EXPOSE 6121 8081
ENTRYPOINT ["/usr/local/bin/weir"]
CMD ["--help"]
