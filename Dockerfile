# crossflow CLI image: release build, ONNX Runtime from the PyPI wheel, bundled models.
FROM rust:1.95-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends python3-pip && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN scripts/setup && cargo build --release --locked -p crossflow-pipelines

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/*
ENV CROSSFLOW_HOME=/opt/crossflow
COPY --from=build /src/target/release/crossflow /opt/crossflow/crossflow
COPY --from=build /src/.ort/libonnxruntime.so.1.31.1 /opt/crossflow/
COPY --from=build /src/models /opt/crossflow/models
ENTRYPOINT ["/opt/crossflow/crossflow"]
