# syntax=docker/dockerfile:1
#
# Builds `kadmesh` and runs `kadmesh node`.
#
#   docker build -t kadmesh .
#   docker run -d --name kadmesh -p 7513:7513 -p 127.0.0.1:7600:7600 -v kadmesh-data:/data kadmesh
#
# The node listens for peers on 7513 and serves its HTTP API and /metrics on 7600 (published on the
# host's loopback only above: the API has no authentication). Its identity key and routing-table
# snapshot live in the /data volume, so a new container on the same volume keeps its id and rejoins
# from its persisted peers. With a config file:
#
#   docker run -d -p 7513:7513 -v kadmesh-data:/data -v "$PWD/node.toml:/etc/kadmesh/node.toml:ro" \
#     kadmesh node --config /etc/kadmesh/node.toml --data-dir /data
#
# `docker stop` sends SIGTERM: the node writes its snapshot and exits cleanly.

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=trixie

FROM rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE} AS build
WORKDIR /src
COPY . .
# protoc is vendored by the build script; nothing else to install.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin kadmesh \
    && install -m 0755 target/release/kadmesh /usr/local/bin/kadmesh

FROM debian:${DEBIAN_RELEASE}-slim
RUN useradd --system --uid 10001 --user-group --home-dir /data --shell /usr/sbin/nologin kadmesh \
    && mkdir -p /data /etc/kadmesh \
    && chown kadmesh:kadmesh /data
COPY --from=build /usr/local/bin/kadmesh /usr/local/bin/kadmesh
USER kadmesh
WORKDIR /data
VOLUME ["/data"]
EXPOSE 7513 7600
STOPSIGNAL SIGTERM
ENTRYPOINT ["kadmesh"]
CMD ["node", "--listen", "0.0.0.0:7513", "--data-dir", "/data", "--api", "0.0.0.0:7600"]
