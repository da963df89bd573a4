#!/usr/bin/env bash
# alongside.sh LOG BACKGROUND_COMMAND -- FOREGROUND_COMMAND...
# Run one command in the background (its output to LOG, shown when it ends) while another runs in the foreground;
# exit 1 if either failed. `make test` runs the ansible-core matrix beside everything it runs on the main release
# (much of each test waits: on throttled pulls, timeouts, the lab hosts, the Codex CLI).
set -uo pipefail
log=$1
background=$2
shift 2
[ "${1:-}" = "--" ] && shift
bash -c "$background" >"$log" 2>&1 &
pid=$!
"$@"
fg_rc=$?
wait "$pid"
bg_rc=$?
echo "===== $background (exit $bg_rc), its output:"
cat "$log"
if [ "$fg_rc" != 0 ] || [ "$bg_rc" != 0 ]; then
  echo "alongside: failed: $* (exit $fg_rc); $background (exit $bg_rc)" >&2
  exit 1
fi
