#!/usr/bin/env bash
# Resolves Apache Kafka (broker, tools, logging) from Maven Central into a cache outside the
# source tree and prints the directory of its jars. A second run finds the cache and neither
# calls Maven nor needs the network.
#
#   HERALD_KAFKA_LIBS=$(scripts/kafka/install.sh)
#
# The cache lives under target/ (or $HERALD_KAFKA_CACHE); its name carries a hash of pom.xml,
# so a change of version resolves anew.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"

for tool in java mvn; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "error: '$tool' is not installed; the Apache Kafka tests need Java 17+ and Maven" >&2
    exit 1
  fi
done

hash="$(sha256sum "$here/pom.xml" | cut -c1-12)"
cache="${HERALD_KAFKA_CACHE:-$root/target/kafka}/$hash"
if [ -f "$cache/complete" ]; then
  echo "$cache/libs"
  exit 0
fi

echo "resolving Apache Kafka from Maven Central into $cache" >&2
rm -rf "$cache"
mkdir -p "$cache"
mvn --batch-mode --quiet --file "$here/pom.xml" \
  dependency:copy-dependencies \
  -DincludeScope=runtime -DoutputDirectory="$cache/libs" >&2
ls "$cache/libs"/kafka_2.13-*.jar "$cache/libs"/kafka-tools-*.jar >/dev/null
touch "$cache/complete"
echo "$cache/libs"
