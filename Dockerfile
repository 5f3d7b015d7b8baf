# crossflow CLI image: the `dist` profile (release, no debug info, stripped, thin LTO,
# no source-tree paths compiled in), ONNX Runtime from the PyPI wheel, bundled models.
# The binary finds both beside itself: /opt/crossflow/libonnxruntime.so.1.31.1 and
# /opt/crossflow/models (CROSSFLOW_HOME).
FROM rust:1.95-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends python3-pip && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN scripts/setup && cargo build --profile dist --no-default-features --locked -p crossflow-pipelines

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/*
ENV CROSSFLOW_HOME=/opt/crossflow
COPY --from=build /src/target/dist/crossflow /opt/crossflow/crossflow
COPY --from=build /src/.ort/libonnxruntime.so.1.31.1 /opt/crossflow/
COPY --from=build /src/models /opt/crossflow/models
# Not root: a cluster node runs SQL for its clients with this user's rights.
RUN useradd --system --uid 10001 --home-dir /nonexistent --shell /usr/sbin/nologin crossflow
USER crossflow
ENTRYPOINT ["/opt/crossflow/crossflow"]
