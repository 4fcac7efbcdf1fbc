#!/bin/sh
# Writes each argument on its own line to the file named by the first.
out=$1
shift
for a in "$@"; do printf '%s\n' "$a"; done > "$out"
