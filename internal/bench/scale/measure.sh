#!/usr/bin/env bash
# measure.sh BIN DIR: the scale measurements on a cluster `trustfed bench
# --nodes 3 --keep` started and loaded (DIR is the directory it logs; nodes
# n1..n3 in DIR/nN, the CA and the admin keys in DIR/pki). Prints one line
# per figure:
#   - checks at 1 and 64 callers (trustfed bench --target, spread, linearizable);
#   - every node's RSS (/proc/PID/status VmRSS);
#   - trustfed snapshot save: time and size;
#   - restart of n3 from its data dir (its Raft snapshot and log): time until ready
#     and at the leader's applied index;
#   - a new node n4 joining: time until ready and at the leader's applied index.
# It starts n3 again and n4 itself and stops them (by PID) at the end; the
# cluster itself stays with bench, stopped by its Ctrl-C.
set -euo pipefail
BIN=$1 DIR=$2
CA=$DIR/pki/ca.pem TOKEN=$DIR/n1/admin.token
DURATION=${DURATION:-10s}
addr() { jq -r ".$2" "$DIR/$1/addrs.json"; }
pid_of() { ps -e -o pid=,args= | awk -v d="-data-dir $DIR/$1 " 'index($0" ", d) { print $1; exit }'; }
status() { "$BIN" status --addr "$1" --cacert "$CA" --token-file "$TOKEN" -o json 2>/dev/null; }
applied() { status "$1" | jq -r '.appliedIndex // 0'; }
ready() { [ "$(status "$1" | jq -r '.ready // false')" = true ]; }
ms() { date +%s%3N; }
started=()
cleanup() { for p in "${started[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

# CPU of each node at rest over 10 s (utime+stime from /proc/PID/stat, in
# ticks of 10 ms): what the leader's periodic work costs at this scale.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
declare -A c0
for n in n1 n2 n3; do c0[$n]=$(cpu_ticks "$(pid_of $n)"); done
sleep 10
for n in n1 n2 n3; do echo "idle cpu $n: $(( ($(cpu_ticks "$(pid_of $n)") - c0[$n]) * 10 )) ms per 10 s"; done

targets=() ; https=()
for n in n1 n2 n3; do targets+=(--target "$(addr $n grpc_addr)"); https+=(--http-addr "$(addr $n http_addr)"); done
for callers in 1 64; do
  conns=$(( callers < 4 ? callers : 4 ))
  echo "checks callers=$callers: $("$BIN" bench "${targets[@]}" "${https[@]}" --cacert "$CA" --token-file "$TOKEN" \
    --admin-key "$DIR/pki/admin-1.key" --approver-key "$DIR/pki/admin-2.key" --orgs 2 --agreements 1 \
    --callers "$callers" --conns "$conns" --duration "$DURATION" | jq -c '{ops_per_s, latency_us, errors, server_rss_mib}')"
done

for n in n1 n2 n3; do echo "rss $n: $(awk '/VmRSS/ {print $2/1024 " MiB"}' "/proc/$(pid_of $n)/status")"; done

leader=$(addr n1 grpc_addr)
t0=$(ms); "$BIN" snapshot save "$DIR/scale.snap" --addr "$leader" --cacert "$CA" --token-file "$TOKEN" >/dev/null
echo "snapshot save: $(( $(ms) - t0 )) ms, $(( $(stat -c %s "$DIR/scale.snap") / 1024 / 1024 )) MiB"
t0=$(ms); "$BIN" snapshot inspect "$DIR/scale.snap" >/dev/null 2>&1 && echo "snapshot inspect: $(( $(ms) - t0 )) ms" || true

# wait_caught_up NAME ADDR T0: until ADDR is ready and at the leader's applied index.
wait_caught_up() {
  local want; want=$(applied "$leader")
  for _ in $(seq 1 1200); do
    if ready "$2" && [ "$(applied "$2")" -ge "$want" ]; then
      echo "$1: ready and at the leader's applied index $want after $(( $(ms) - $3 )) ms"; return 0
    fi
    sleep 0.1
  done
  echo "$1: not caught up after 120 s"; return 1
}

p=$(pid_of n3); args=$(tr '\0' ' ' < "/proc/$p/cmdline")
kill "$p"; while kill -0 "$p" 2>/dev/null; do sleep 0.05; done
rm -f "$DIR/n3/addrs.json" # written again, with new ports, once it listens
t0=$(ms); $args >>"$DIR/n3/server.log" 2>&1 & started+=($!)
until jq -e .grpc_addr "$DIR/n3/addrs.json" >/dev/null 2>&1; do sleep 0.05; done
wait_caught_up "restart n3" "$(addr n3 grpc_addr)" "$t0"

"$BIN" ca issue-node --dir "$DIR/pki" --node-id n4 --host 127.0.0.1 --host localhost --force >/dev/null
mkdir -p "$DIR/n4"
t0=$(ms)
"$BIN" server -data-dir "$DIR/n4" -node-id n4 -tls-ca "$CA" -tls-cert "$DIR/pki/n4.pem" -tls-key "$DIR/pki/n4-key.pem" \
  -tls-ca-key "$DIR/pki/ca-key.pem" -join "$leader" -raft-addr 127.0.0.1:0 -grpc-addr 127.0.0.1:0 -http-addr 127.0.0.1:0 \
  -rate-checks 0 -rate-writes 0 -rate-reads 0 >"$DIR/n4/server.log" 2>&1 & started+=($!)
until jq -e .grpc_addr "$DIR/n4/addrs.json" >/dev/null 2>&1; do sleep 0.05; done
wait_caught_up "join n4" "$(addr n4 grpc_addr)" "$t0"
echo "rss n4: $(awk '/VmRSS/ {print $2/1024 " MiB"}' "/proc/${started[-1]}/status")"

# Disaster recovery: the saved snapshot into a fresh data dir, and a new
# single-voter cluster started from it (r1, on its own ports).
"$BIN" ca issue-node --dir "$DIR/pki" --node-id r1 --host 127.0.0.1 --host localhost --force >/dev/null
raft=127.0.0.1:$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
t0=$(ms)
"$BIN" snapshot restore "$DIR/scale.snap" --data-dir "$DIR/r1" --node-id r1 --raft-addr "$raft" >/dev/null
echo "snapshot restore (offline): $(( $(ms) - t0 )) ms"
t1=$(ms)
"$BIN" server -data-dir "$DIR/r1" -node-id r1 -tls-ca "$CA" -tls-cert "$DIR/pki/r1.pem" -tls-key "$DIR/pki/r1-key.pem" \
  -tls-ca-key "$DIR/pki/ca-key.pem" -raft-addr "$raft" -grpc-addr 127.0.0.1:0 -http-addr 127.0.0.1:0 \
  -rate-checks 0 -rate-writes 0 -rate-reads 0 >"$DIR/r1/server.log" 2>&1 & started+=($!)
while [ ! -s "$DIR/r1/addrs.json" ] || ! jq -e .grpc_addr "$DIR/r1/addrs.json" >/dev/null 2>&1; do sleep 0.05; done
r1=$(addr r1 grpc_addr)
for _ in $(seq 1 1200); do ready "$r1" && break; sleep 0.1; done
ready "$r1" && echo "restored server r1: ready $(( $(ms) - t1 )) ms after its start ($(( $(ms) - t0 )) ms with the restore), applied index $(applied "$r1")" \
  || echo "restored server r1: not ready after 120 s: $(status "$r1" | jq -c '{state, notReady}')"
