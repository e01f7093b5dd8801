#!/usr/bin/env bash
# Runs every test of the workspace. Installs and starts what the tests need that a
# fresh machine lacks (idempotent; fast when already installed).
set -euo pipefail
cd "$(dirname "$0")"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/weir-target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

# Services used by the tests are started here and stopped on exit: hooks append
# process ids to `pids`, or register a command with `at_exit CMD ARGS...` (run at
# exit, last registered first, before the pids are killed).
pids=()
exit_cmds=()
at_exit() { exit_cmds+=("$(printf '%q ' "$@")"); }
cleanup() {
  local i
  for (( i=${#exit_cmds[@]}-1; i>=0; i-- )); do eval "${exit_cmds[$i]}" || true; done
  for p in "${pids[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
}
trap cleanup EXIT

for hook in scripts/test.d/*.sh; do
  [ -e "$hook" ] || continue
  # shellcheck source=/dev/null
  source "$hook"
done

cargo test --workspace --no-fail-fast "$@"
