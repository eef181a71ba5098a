# Shared by the bench scripts: build the release binary (or take $BIN), make a scratch folder.
# Sets: bin (the binary), work (a folder removed on exit).
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/inferwatch/target}"
if command -v mold >/dev/null 2>&1; then
  export CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS="-C link-arg=-fuse-ld=mold"
fi
# BIN names a binary to measure instead (a saved build, for comparisons).
if [ -n "${BIN:-}" ]; then
  bin=$(realpath "$BIN")
else
  cargo build --release --locked --bin inferwatch >&2
  bin="$CARGO_TARGET_DIR/release/inferwatch"
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export INFERWATCH_OUT="$work"
machine() { echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB, $(uname -m); $(date -u +%F)"; }
# Uses the broker at $KAFKA_BROKERS, or starts the test broker (and stops it on exit).
kafka_broker() {
  started=
  if [ -z "${KAFKA_BROKERS:-}" ]; then
    scripts/kafka.sh start >&2
    started=1
    export KAFKA_BROKERS=127.0.0.1:${KAFKA_PORT:-19092}
  fi
  trap '[ -n "$started" ] && scripts/kafka.sh stop >&2; rm -rf "$work"' EXIT
}
# examples/kafka.yaml for topic $topic and consumer group $1, written in $work; prints its path.
kafka_config() {
  sed -e "s|\${KAFKA_BROKERS}|$KAFKA_BROKERS|" -e "s|\${INFERWATCH_TOPIC}|$topic|" \
    -e "s|\${INFERWATCH_GROUP:-inferwatch}|$1|" -e "s|\${INFERWATCH_OUT:-../out}|$work|" \
    -e "s|^queries: .*|queries: $PWD/queries|" -e "s|stdout: true|stdout: false|" \
    examples/kafka.yaml >"$work/$1.yaml"
  echo "$work/$1.yaml"
}
