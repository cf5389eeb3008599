#!/usr/bin/env bash
# Installs the Debian packages the build and the tests need, when missing: OpenSSL's headers
# and pkg-config (librdkafka, a dev-dependency, links the system's OpenSSL for TLS and SCRAM)
# and the openssl tool (it makes the test certificates); kcat, the anchor of the benchmark's
# console mode (its test runs it). Run by scripts/test.sh and .ci/run.
set -euo pipefail
missing=()
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
dpkg -s libssl-dev >/dev/null 2>&1 || missing+=(libssl-dev)
command -v kcat >/dev/null 2>&1 || missing+=(kcat)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing Debian packages: ${missing[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
