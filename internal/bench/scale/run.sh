#!/usr/bin/env bash
# run.sh BIN ORGS AGREEMENTS MEMBERS: the scale run of make bench-scale
# (WORKERS: preload calls at a time; IMPORT: agreements per ImportAgreements
# call, 0 to propose and sign them one call each).
# `trustfed bench --nodes 3 --keep` preloads the cluster and measures
# single-caller checks at that scale (its JSON line), then measure.sh takes
# the other figures on the kept cluster, then bench is stopped with SIGTERM
# (it stops its servers and removes their data; not SIGINT, which a job a
# non-interactive shell starts in the background ignores).
# The progress of the preload is in a temporary file: its name is printed
# first.
set -euo pipefail
BIN=$1 ORGS=$2 AGREEMENTS=$3 MEMBERS=$4
here=$(cd "$(dirname "$0")" && pwd)
log=$(mktemp)
echo "bench's log: $log"
"$BIN" bench --nodes 3 --orgs "$ORGS" --agreements "$AGREEMENTS" --member-nodes "$MEMBERS" \
  --preload-workers "${WORKERS:-64}" --preload-import "${IMPORT:-500}" --callers 1 --conns 1 --duration "${DURATION:-10s}" --keep --verbose 2>"$log" &
bench=$!
trap 'kill -TERM $bench 2>/dev/null || true; wait $bench || true; rm -f "$log"' EXIT
until grep -q 'stays up until interrupted' "$log"; do
  kill -0 $bench 2>/dev/null || { cat "$log" >&2; exit 1; }
  sleep 1
done
grep -E 'msg=preloaded' "$log"
dir=$(sed -n 's/.*stays up until interrupted.* dir=\([^ ]*\).*/\1/p' "$log")
"$here/measure.sh" "$BIN" "$dir"
