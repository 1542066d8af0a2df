#!/usr/bin/env bash
# An elementwise op is one row of ad/ad_ew.h plus its public declaration: the library's and the
# demos' sources that name softplus (tests and docs aside) must be at most three files.
set -euo pipefail
cd "$1"
files=$(grep -rl softplus ad nn optim demos || true)
echo "$files"
count=$(printf '%s' "$files" | grep -c . || true)
echo "files naming softplus: $count"
[ "$count" -le 3 ]
