#!/usr/bin/env bash
# timed.sh NAME COMMAND...: run COMMAND, then print "part NAME: <seconds>s (exit <status>, CPU <seconds>s)" and exit
# with its status. `make test` times each of its parts this way; .ci/run prints the lines at the end. The CPU time is
# the user and system time of COMMAND's processes that were waited for (not of daemons they started: the lab's
# machines, servers left running).
name=$1
shift
started=$(date +%s)
"$@"
rc=$?
cpu_file=$(mktemp)
times > "$cpu_file"  # a builtin, run in this shell: its second line is the children's user and system time
cpu=$(tail -n 1 "$cpu_file" | awk '{ total = 0; for (i = 1; i <= 2; i++) { split($i, t, /[ms]/); total += t[1] * 60 + t[2] } printf "%.0f", total }')
rm -f "$cpu_file"
echo "part $name: $(( $(date +%s) - started ))s (exit $rc, CPU ${cpu}s)"
exit "$rc"
