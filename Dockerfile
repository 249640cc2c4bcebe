# syntax=docker/dockerfile:1
# Multi-stage build of slurm-gpu-exporter (both programs: `cluster` and `node`).
#   docker build -t slurm-gpu-exporter:0.1.0 .
# The runtime image is distroless (glibc, CA certificates, no shell) and runs as non-root 65532.
# The node agent's DaemonSet overrides the user (docs/deploy.md); NVML (libnvidia-ml.so.1) is not in
# the image: the NVIDIA container runtime mounts the host driver's copy into the container.

FROM rust:1.85-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin slurm-gpu-exporter \
    && install -D -m 0755 target/release/slurm-gpu-exporter /out/slurm-gpu-exporter

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/slurm-gpu-exporter /usr/local/bin/slurm-gpu-exporter
USER 65532:65532
# 9342: cluster scraper, 9343: node agent.
EXPOSE 9342 9343
ENTRYPOINT ["/usr/local/bin/slurm-gpu-exporter"]
CMD ["--help"]
