# Sourced by test.sh: a throwaway PostgreSQL server for the postgres connector's
# tests — Debian's `postgresql` (installed when missing), a fresh cluster in a
# temporary directory, run as an unprivileged user on a free port of 127.0.0.1,
# with a password-authenticated user. Exports
# WEIR_TEST_POSTGRES=postgresql://USER:PASSWORD@127.0.0.1:PORT/DB; the server is
# stopped and its directory removed at exit.
pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)
if [ -z "$pg_bin" ] || [ ! -x "$pg_bin/initdb" ]; then
  echo "test.sh: installing postgresql (for the postgres connector's tests)"
  if [ "$(id -u)" -eq 0 ]; then sudo_cmd=(); else sudo_cmd=(sudo); fi
  "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
  "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >/dev/null
  pg_bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n1)
fi
# PostgreSQL refuses to run as root: as root, run it as the user 'weirtest'
if [ "$(id -u)" -eq 0 ]; then
  id weirtest >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin weirtest
  pg_as=(runuser -u weirtest --)
else
  pg_as=()
fi
pg_dir=$(mktemp -d "${TMPDIR:-/tmp}/weir-pg.XXXXXX")
chmod 755 "$pg_dir"
pg_pass=$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')
printf '%s\n' "$pg_pass" >"$pg_dir/pwfile"
[ "${#pg_as[@]}" -eq 0 ] || chown -R weirtest "$pg_dir"
pg_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"${pg_as[@]}" "$pg_bin/initdb" -D "$pg_dir/data" -U weir --pwfile="$pg_dir/pwfile" --auth=scram-sha-256 \
  --no-sync -E UTF8 --locale=C >"$pg_dir/initdb.log" 2>&1 \
  || { cat "$pg_dir/initdb.log" >&2; echo "test.sh: initdb failed" >&2; exit 1; }
rm -f "$pg_dir/pwfile"
"${pg_as[@]}" "$pg_bin/pg_ctl" -D "$pg_dir/data" -l "$pg_dir/server.log" -w -s \
  -o "-c listen_addresses=127.0.0.1 -c port=$pg_port -c unix_socket_directories=$pg_dir -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" start \
  || { cat "$pg_dir/server.log" >&2; echo "test.sh: PostgreSQL did not start" >&2; exit 1; }
at_exit rm -rf "$pg_dir"
at_exit "${pg_as[@]}" "$pg_bin/pg_ctl" -D "$pg_dir/data" -m immediate -s stop
PGPASSWORD="$pg_pass" "$pg_bin/createdb" -h 127.0.0.1 -p "$pg_port" -U weir weir
export WEIR_TEST_POSTGRES="postgresql://weir:$pg_pass@127.0.0.1:$pg_port/weir"
echo "test.sh: PostgreSQL test server on 127.0.0.1:$pg_port (database weir)"
unset pg_pass pg_as
