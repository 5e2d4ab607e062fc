#!/usr/bin/env bash
# expect_failure.sh MESSAGE COMMAND...: passes when COMMAND exits non-zero and its output
# contains MESSAGE (a fixed string).  Used by CTest for the bad-input checks.
set -u
message="$1"
shift
output="$("$@" 2>&1)"
status=$?
printf '%s\n' "$output"
if [ "$status" -eq 0 ]; then
  echo "expect_failure: the command succeeded, a failure was expected" >&2
  exit 1
fi
if ! grep -qF -- "$message" <<<"$output"; then
  echo "expect_failure: exit status $status but the output lacks: $message" >&2
  exit 1
fi
echo "expect_failure: failed as expected (status $status)"
