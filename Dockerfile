# Build stage: the release binary.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY tests ./tests
RUN cargo build --release --locked --bin inferwatch

# Runtime stage: a small image, non-root user.
FROM debian:bookworm-slim
# librdkafka links OpenSSL (TLS and SASL/SCRAM to Kafka).
RUN apt-get update \
 && apt-get install -y --no-install-recommends libssl3 ca-certificates zlib1g \
 && rm -rf /var/lib/apt/lists/*
RUN useradd --system --uid 10001 --home /var/lib/inferwatch inferwatch \
 && mkdir -p /var/lib/inferwatch /etc/inferwatch \
 && chown inferwatch /var/lib/inferwatch
COPY --from=build /src/target/release/inferwatch /usr/local/bin/inferwatch
COPY queries /etc/inferwatch/queries
COPY examples /etc/inferwatch/examples
USER inferwatch
WORKDIR /var/lib/inferwatch
ENV INFERWATCH_OUT=/var/lib/inferwatch
ENTRYPOINT ["inferwatch"]
CMD ["run", "--config", "/etc/inferwatch/examples/quickstart.yaml", "--queries", "/etc/inferwatch/queries"]
