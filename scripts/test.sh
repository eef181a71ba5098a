#!/usr/bin/env bash
# The whole test suite: starts the real Kafka broker the tests use, runs `cargo test`,
# and stops the broker again, also when tests fail. Arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/kafka.sh start
trap 'scripts/kafka.sh stop' EXIT
eval "$(scripts/kafka.sh env | sed 's/^/export /')"
cargo test "$@"
