# Sourced by test.sh: the kafka connector builds rdkafka's bundled librdkafka
# (./configure && make, with zlib), which needs a C compiler, make and zlib's
# headers. Installs what is missing (idempotent, quiet).
kafka_deps=()
for pkg in build-essential zlib1g-dev; do
  dpkg -s "$pkg" >/dev/null 2>&1 || kafka_deps+=("$pkg")
done
if [ "${#kafka_deps[@]}" -gt 0 ]; then
  echo "test.sh: installing ${kafka_deps[*]} (needed to build librdkafka for the kafka connector)"
  if [ "$(id -u)" -eq 0 ]; then sudo_cmd=(); else sudo_cmd=(sudo); fi
  "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
  "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${kafka_deps[@]}" >/dev/null
fi
unset kafka_deps
