#!/usr/bin/env bash
# Runs every fuzz target of the module for $FUZZTIME each. Crashers that the
# fuzzer finds are written under the package's testdata/fuzz, where plain
# `go test` replays them from then on.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${FUZZTIME:=3s}"
n=0
for pkg in $(go list ./...); do
  for target in $(go test -list '^Fuzz' "$pkg" | grep '^Fuzz' || true); do
    echo "== fuzz $pkg $target ($FUZZTIME)"
    for try in 1 2; do
      if go test -run '^$' -fuzz "^${target}\$" -fuzztime "$FUZZTIME" "$pkg" >/tmp/fuzz.$$.log 2>&1; then
        break
      fi
      # The fuzzing engine itself sometimes stops on its own deadline
      # ("context deadline exceeded") with no failing input: once, that
      # earns a second run; a failing input never does.
      if [ "$try" = 1 ] && grep -q 'context deadline exceeded' /tmp/fuzz.$$.log && ! grep -q 'Failing input' /tmp/fuzz.$$.log; then
        echo "   (the fuzzing engine hit its own deadline; running again)"
        continue
      fi
      cat /tmp/fuzz.$$.log; rm -f /tmp/fuzz.$$.log; exit 1
    done
    n=$((n + 1))
  done
done
rm -f /tmp/fuzz.$$.log
echo "fuzz: $n targets ran for $FUZZTIME each, no failure"
