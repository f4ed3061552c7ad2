# Multi-stage build of the gpt-load binary. Same port, volume and health check as GPT-Load v1's
# image, so a compose file written for v1 keeps working.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p control

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates wget \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY --from=build /src/target/release/gpt-load /app/gpt-load
ENV XDG_RUNTIME_DIR=/tmp
EXPOSE 3001
VOLUME ["/app/data"]
HEALTHCHECK --interval=30s --timeout=5s CMD wget -q -O /dev/null http://127.0.0.1:3001/health || exit 1
ENTRYPOINT ["/app/gpt-load"]
