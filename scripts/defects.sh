#!/usr/bin/env bash
# Re-introduces each review defect kept in tests/data/defects/ (one patch at a time) and checks
# that what catches it (a simulation seed range or a test, listed in catches.tsv) fails with the
# defect and passes without it. Opt-in (each patch is a rebuild): bash scripts/defects.sh [name]
set -euo pipefail
cd "$(dirname "$0")/.."
dir=tests/data/defects
only="${1:-}"
applied=""
undo() { if [ -n "$applied" ]; then git apply -R "$applied" || true; applied=""; fi; }
trap undo EXIT INT TERM
fails=0
while IFS=$'\t' read -r patch cmd; do
  case "$patch" in ''|'#'*) continue ;; esac
  if [ -n "$only" ] && [[ "$patch" != *"$only"* ]]; then continue; fi
  git apply "$dir/$patch"; applied="$dir/$patch"
  if bash -c "$cmd" >/tmp/defects.$$.log 2>&1; then
    echo "MISSED  $patch: '$cmd' passed with the defect in"; fails=$((fails + 1))
  else
    echo "caught  $patch by '$cmd'"
    grep -E "failing seeds|^\s+[0-9]+,$|liveness|panicked" /tmp/defects.$$.log | head -4 | sed 's/^/        /' || true
  fi
  undo
done < "$dir/catches.tsv"
rm -f /tmp/defects.$$.log
exit "$fails"
