#!/usr/bin/env bash
# The whole test suite: starts the real Kafka broker the tests use, runs `cargo test`,
# and stops the broker again, also when tests fail. Arguments go to `cargo test`.
#
# First it checks what the tests need (scripts/setup.sh): as root it installs what is
# missing from Debian's packages; otherwise it names what is missing in one line and
# stops before the build.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" = 0 ]; then scripts/setup.sh; else scripts/setup.sh --check; fi
# The linker the build uses when the machine has it (several times faster than ld on
# the large test binaries).
if command -v mold >/dev/null 2>&1 && [ -z "${CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS:-}" ]; then
  export CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS="-C link-arg=-fuse-ld=mold"
fi
scripts/kafka.sh start
trap 'scripts/kafka.sh stop' EXIT
eval "$(scripts/kafka.sh env | sed 's/^/export /')"
cargo test "$@"
