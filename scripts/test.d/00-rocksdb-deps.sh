# Sourced by test.sh: the RocksDB state backend links Debian's librocksdb
# (librocksdb-dev, see .cargo/config.toml), and its bindings are generated with
# bindgen, which needs libclang. Installs what is missing (idempotent, quiet).
rocksdb_deps=()
for pkg in libclang-dev librocksdb-dev; do
  dpkg -s "$pkg" >/dev/null 2>&1 || rocksdb_deps+=("$pkg")
done
if [ "${#rocksdb_deps[@]}" -gt 0 ]; then
  echo "test.sh: installing ${rocksdb_deps[*]} (needed to build the RocksDB state backend)"
  if [ "$(id -u)" -eq 0 ]; then sudo_cmd=(); else sudo_cmd=(sudo); fi
  "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
  "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${rocksdb_deps[@]}" >/dev/null
fi
unset rocksdb_deps
