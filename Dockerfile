# Build stage: the release binary.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY tests ./tests
RUN cargo build --release --locked --bin driftwatch

# Runtime stage: a small image, non-root user.
FROM debian:bookworm-slim
# librdkafka links OpenSSL (TLS and SASL/SCRAM to Kafka).
RUN apt-get update \
 && apt-get install -y --no-install-recommends libssl3 ca-certificates zlib1g \
 && rm -rf /var/lib/apt/lists/*
RUN useradd --system --uid 10001 --home /var/lib/driftwatch driftwatch \
 && mkdir -p /var/lib/driftwatch /etc/driftwatch \
 && chown driftwatch /var/lib/driftwatch
COPY --from=build /src/target/release/driftwatch /usr/local/bin/driftwatch
COPY queries /etc/driftwatch/queries
COPY examples /etc/driftwatch/examples
USER driftwatch
WORKDIR /var/lib/driftwatch
ENV DRIFTWATCH_OUT=/var/lib/driftwatch
ENTRYPOINT ["driftwatch"]
CMD ["run", "--config", "/etc/driftwatch/examples/quickstart.yaml", "--queries", "/etc/driftwatch/queries"]
