# Taproom: every service in one image. `docker build -t taproom .`
# Runs `server all` by default; `docker run taproom server users` runs one service.

FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --profile production --locked --bin server \
 && cp target/production/server /usr/local/bin/server

FROM debian:bookworm-slim
# bubblewrap and python3: the exercises service runs submissions with them (it refuses
# to start without a working sandbox).
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates bubblewrap python3 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/taproom --create-home taproom
COPY --from=build /usr/local/bin/server /usr/local/bin/server
USER taproom
WORKDIR /var/lib/taproom
ENV BIND_ADDRESS=0.0.0.0 \
    DATA_DIR=/var/lib/taproom/data
VOLUME ["/var/lib/taproom/data"]
EXPOSE 5001 5002 5003 5004 5005 5006 5007
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 CMD ["server", "healthcheck"]
ENTRYPOINT ["server"]
CMD ["all"]
