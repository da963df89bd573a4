#!/usr/bin/env bash
# timed.sh NAME COMMAND...: run COMMAND, then print "part NAME: <seconds>s (exit <status>)" and exit with its status.
# `make test` times each of its parts this way; .ci/run prints the lines at the end.
name=$1
shift
started=$(date +%s)
"$@"
rc=$?
echo "part $name: $(( $(date +%s) - started ))s (exit $rc)"
exit "$rc"
