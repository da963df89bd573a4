#!/usr/bin/env bash
# alongside.sh LOG COMMAND [LOG COMMAND ...] -- FOREGROUND_COMMAND...
# Run each COMMAND in the background (its output to its LOG, shown when it ends) while the foreground command runs;
# exit 1 if any of them failed. `make test` runs the ansible-core matrix, the main release's unit and integration
# tests and the static checks beside the parts that need the lab fleet: much of each test's time is waiting (on
# throttled pulls, timeouts, the lab hosts, the Codex CLI), so the machine's cores stay busy. The background commands
# run at a lower priority (nice), so the foreground, the longest chain, is not slowed by them.
set -uo pipefail
logs=() commands=() pids=()
while [ "$#" -ge 2 ] && [ "$1" != "--" ]; do
  logs+=("$1") commands+=("$2")
  nice -n "${ALONGSIDE_NICE:-10}" bash -c "$2" >"$1" 2>&1 &
  pids+=("$!")
  shift 2
done
[ "${1:-}" = "--" ] || { echo "usage: alongside.sh LOG COMMAND [LOG COMMAND ...] -- COMMAND..." >&2; exit 2; }
shift
"$@"
fg_rc=$?
failed=()
[ "$fg_rc" = 0 ] || failed+=("$* (exit $fg_rc)")
for i in "${!pids[@]}"; do
  wait "${pids[$i]}"
  rc=$?
  echo "===== ${commands[$i]} (exit $rc), its output:"
  cat "${logs[$i]}"
  [ "$rc" = 0 ] || failed+=("${commands[$i]} (exit $rc)")
done
if ((${#failed[@]})); then
  printf 'alongside: failed: %s\n' "${failed[@]}" >&2
  exit 1
fi
