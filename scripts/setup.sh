#!/usr/bin/env bash
# What building and testing inferwatch needs besides the Rust toolchain, checked in a
# second and installed from Debian's packages when this user may (root, or sudo without
# a password). Debian 12 (bookworm) and 13 (trixie).
#
#   scripts/setup.sh           check, install what is missing, check again
#   scripts/setup.sh --check   check only: one line naming what is missing, exit 1
#
# The Rust toolchain itself comes from rustup (https://rustup.rs; Debian's rustc is
# older than the `rust-version` in Cargo.toml):
#   curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y
#   rustup component add rustfmt clippy     (for `cargo fmt` and `cargo clippy` only)
set -euo pipefail
cd "$(dirname "$0")/.."

mode=${1:-install}
case "$mode" in
  install | --check) ;;
  *) echo "usage: scripts/setup.sh [--check]" >&2; exit 2 ;;
esac

# The Rust version the crate needs, from Cargo.toml.
want_rust=$(sed -n 's/^rust-version *= *"\(.*\)"/\1/p' Cargo.toml)

# Rust problems are reported, never installed: rustup belongs to the user.
rust_missing() {
  if ! command -v cargo >/dev/null 2>&1 || ! command -v rustc >/dev/null 2>&1; then
    echo "the Rust toolchain (rustup: https://rustup.rs)"
    return
  fi
  local have
  have=$(rustc --version | sed -n 's/^rustc \([0-9]*\.[0-9]*\).*/\1/p')
  if [ "$(printf '%s\n%s\n' "$want_rust" "$have" | sort -V | head -1)" != "$want_rust" ]; then
    echo "Rust >= $want_rust (have $have: rustup update stable)"
  fi
}

java_major() {
  java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -1
}

# Debian packages still missing, one per line: package name.
packages_missing() {
  command -v cc >/dev/null 2>&1 && command -v c++ >/dev/null 2>&1 &&
    command -v make >/dev/null 2>&1 || echo build-essential     # librdkafka is built from source
  command -v pkg-config >/dev/null 2>&1 || echo pkg-config
  dpkg -s libssl-dev >/dev/null 2>&1 || echo libssl-dev         # Kafka TLS and SASL, SMTP TLS
  dpkg -s zlib1g-dev >/dev/null 2>&1 || echo zlib1g-dev
  command -v mold >/dev/null 2>&1 || echo mold                 # links the test binaries
  command -v curl >/dev/null 2>&1 || echo curl
  local j
  j=$(command -v java >/dev/null 2>&1 && java_major || true)
  [ -n "$j" ] && [ "$j" -ge 17 ] || echo default-jre-headless  # the Kafka test broker: JDK >= 17
  command -v mvn >/dev/null 2>&1 || echo maven                 # fetches the broker's jars
  # The SMTP test server runs on Debian's interpreter (SMTP_PYTHON overrides).
  [ -x /usr/bin/python3 ] || echo python3
  "${SMTP_PYTHON:-/usr/bin/python3}" -c 'import aiosmtpd' >/dev/null 2>&1 || echo python3-aiosmtpd
  command -v openssl >/dev/null 2>&1 || echo openssl           # its certificate
  command -v prometheus >/dev/null 2>&1 || echo prometheus     # the dashboard test's Prometheus
  command -v promtool >/dev/null 2>&1 || echo prometheus
  command -v prometheus-alertmanager >/dev/null 2>&1 ||
    command -v alertmanager >/dev/null 2>&1 || echo prometheus-alertmanager  # receiver tests
  command -v chromium >/dev/null 2>&1 || echo chromium         # opens the HTML report in a test
}

report() {
  local rust pkgs line
  rust=$(rust_missing)
  pkgs=$(packages_missing | sort -u | tr '\n' ' ' | sed 's/ $//')
  line=""
  [ -n "$rust" ] && line="$(echo "$rust" | paste -sd ';' - | sed 's/;/; /g')"
  if [ -n "$pkgs" ]; then
    [ -n "$line" ] && line="$line; "
    line="${line}Debian packages: $pkgs (scripts/setup.sh installs them as root)"
  fi
  echo "$line"
}

missing=$(report)
if [ -z "$missing" ]; then
  exit 0
fi
pkgs=$(packages_missing | sort -u | tr '\n' ' ')
if [ "$mode" = install ] && [ -n "${pkgs// /}" ]; then
  if [ "$(id -u)" = 0 ]; then
    sudo=()
  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    sudo=(sudo -n)
  else
    echo "setup: missing $missing; run scripts/setup.sh as root to install them" >&2
    exit 1
  fi
  echo "setup: installing $pkgs" >&2
  # shellcheck disable=SC2086
  "${sudo[@]}" apt-get update -qq
  # shellcheck disable=SC2086
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
    --no-install-recommends $pkgs >/dev/null
  missing=$(report)
  [ -z "$missing" ] && exit 0
fi
echo "setup: missing $missing" >&2
exit 1
