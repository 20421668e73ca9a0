#!/usr/bin/env bash
# deploy/cluster.sh — run trustfed's 3-node Docker Compose cluster.
#
#   deploy/cluster.sh up          build binary + image, create certs, start, wait, print exports
#   deploy/cluster.sh down [--all] stop and remove containers, network, volumes and ./data
#                                  (--all: also ./certs and the deploy/trustfed binary)
#   deploy/cluster.sh test        up, fail-over smoke test with the CLI, down (exit 1 on failure)
#   deploy/cluster.sh status [N]  `trustfed status` against node N (n1..n3, default n1)
#   deploy/cluster.sh cli N ARGS  any trustfed CLI command against node N, e.g. cli n2 org list
#   deploy/cluster.sh logs [args] docker compose logs for the project
#   deploy/cluster.sh ps          docker compose ps for the project
#   deploy/cluster.sh env         print the export lines again
#
# Environment:
#   TRUSTFED_N{1,2,3}_GRPC_PORT   published gRPC ports (default 7443, 7444, 7445)
#   TRUSTFED_N{1,2,3}_HTTP_PORT   published REST ports (default 8443, 8444, 8445)
#   TRUSTFED_WAIT                 seconds to wait for a cluster state (default 90)
#   TRUSTFED_KEEP=1               `test` leaves the cluster running when it fails
#   TRUSTFED_ROUNDS               fail-over rounds in `test` (default 2)
#   TRUSTFED_REF=<git ref>        build that commit (via git archive) instead of the working tree
#
# Only loopback ports and the compose project "trustfed" (its containers and
# network) are touched. Works with `docker compose` (v2) or `docker-compose` (v1).
set -euo pipefail

DEPLOY=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$DEPLOY")
PROJECT=trustfed
IMAGE=trustfed:dev
COMPOSE_FILE=$DEPLOY/docker-compose.yml
CERTS=$DEPLOY/certs
DATA=$DEPLOY/data
# The federation admins' approval keys `up` enrols (alice, bob): with the
# state that knows them, so `down` removes both.
ADMINS=$DATA/admins
BIN=$DEPLOY/trustfed # the static binary: put in the image and used as the CLI
NODES=(n1 n2 n3)
CONTAINER_UID=65532
WAIT=${TRUSTFED_WAIT:-90}

export TRUSTFED_N1_GRPC_PORT=${TRUSTFED_N1_GRPC_PORT:-7443}
export TRUSTFED_N2_GRPC_PORT=${TRUSTFED_N2_GRPC_PORT:-7444}
export TRUSTFED_N3_GRPC_PORT=${TRUSTFED_N3_GRPC_PORT:-7445}
export TRUSTFED_N1_HTTP_PORT=${TRUSTFED_N1_HTTP_PORT:-8443}
export TRUSTFED_N2_HTTP_PORT=${TRUSTFED_N2_HTTP_PORT:-8444}
export TRUSTFED_N3_HTTP_PORT=${TRUSTFED_N3_HTTP_PORT:-8445}

# As root the data dirs and keys are chowned to the image's user (65532); a
# non-root caller cannot chown, so the containers run as the caller instead.
if [ "$(id -u)" -eq 0 ]; then
	export TRUSTFED_UID=$CONTAINER_UID TRUSTFED_GID=$CONTAINER_UID
else
	export TRUSTFED_UID=$(id -u) TRUSTFED_GID=$(id -g)
fi

# ---------------------------------------------------------------- helpers

T0=$(date +%s%N)
log() { printf '==> [%6.1fs] %s\n' "$(elapsed_since "$T0")" "$*" >&2; }
die() {
	printf 'FAIL: %s\n' "$*" >&2
	exit 1
}
now() { date +%s%N; }
# elapsed_since START_NS -> seconds with one decimal
elapsed_since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", (b - a) / 1e9 }'; }

COMPOSE=()
find_compose() {
	if docker compose version >/dev/null 2>&1; then
		COMPOSE=(docker compose)
	elif command -v docker-compose >/dev/null 2>&1; then
		COMPOSE=(docker-compose)
	else
		die "neither 'docker compose' nor 'docker-compose' is available"
	fi
}
compose() {
	[ ${#COMPOSE[@]} -gt 0 ] || find_compose
	"${COMPOSE[@]}" -p "$PROJECT" -f "$COMPOSE_FILE" "$@"
}

grpc_port() { # node -> published gRPC port
	case $1 in
	n1) echo "$TRUSTFED_N1_GRPC_PORT" ;;
	n2) echo "$TRUSTFED_N2_GRPC_PORT" ;;
	n3) echo "$TRUSTFED_N3_GRPC_PORT" ;;
	*) die "unknown node $1" ;;
	esac
}

http_port() { # node -> published REST port
	case $1 in
	n1) echo "$TRUSTFED_N1_HTTP_PORT" ;;
	n2) echo "$TRUSTFED_N2_HTTP_PORT" ;;
	n3) echo "$TRUSTFED_N3_HTTP_PORT" ;;
	*) die "unknown node $1" ;;
	esac
}

# scrape NODE TOKEN: NODE's GET /metrics over HTTPS (fails on any non-200).
scrape() {
	curl -fsS --max-time 5 --cacert "$CERTS/ca.pem" -H "Authorization: Bearer $2" "https://127.0.0.1:$(http_port "$1")/metrics"
}

# metrics_agree TOKEN: every node's metrics answer and know a leader, and
# exactly one node says it is the ready leader.
metrics_agree() {
	local n body leaders=0
	for n in "${NODES[@]}"; do
		body=$(scrape "$n" "$1") || return 1
		grep -qx 'trustfed_raft_has_leader 1' <<<"$body" || return 1
		! grep -qx 'trustfed_raft_ready_leader 1' <<<"$body" || leaders=$((leaders + 1))
	done
	[ "$leaders" -eq 1 ]
}

token() {
	local f=$DATA/n1/admin.token
	[ -s "$f" ] || die "no admin token in $f (is the cluster up?)"
	tr -d '[:space:]' <"$f"
}

# cli NODE ARGS...: the trustfed CLI against NODE's published gRPC port, with
# the admin token; with MEMBER=ORG set, as ORG's member node gw-1 instead (its
# client certificate and key from $KEYS, no token: member calls such as
# `check` come only from member nodes, see register_member).
cli() {
	local node=$1
	shift
	if [ -n "${MEMBER:-}" ]; then
		TRUSTFED_ADDR=127.0.0.1:$(grpc_port "$node") TRUSTFED_TOKEN= TRUSTFED_TOKEN_FILE= \
			TRUSTFED_CERT=$KEYS/$MEMBER-gw.crt TRUSTFED_KEY=$KEYS/$MEMBER-gw.key \
			TRUSTFED_CACERT=$CERTS/ca.pem "$BIN" --timeout 5s "$@"
	else
		TRUSTFED_ADDR=127.0.0.1:$(grpc_port "$node") TRUSTFED_TOKEN=${TOKEN:-$(token)} \
			TRUSTFED_CACERT=$CERTS/ca.pem "$BIN" --timeout 5s "$@"
	fi
}

# cluster_view NODE: "node state ready leader members voters" as NODE sees
# it, parsed from `trustfed status` (leader "-" when there is none).
cluster_view() {
	cli "$1" status 2>/dev/null | awk '
		/^Node:/   { node = $2 }
		/^State:/  { state = $2 }
		/^Ready:/  { ready = $2 }
		/^Leader:/ { leader = $2 }
		/^NODE[ \t]/ { table = 1; next }
		table && NF >= 5 { members++; if ($4 == "voter") voters++ }
		END { if (node == "") exit 1; printf "%s %s %s %s %d %d\n", node, state, ready, leader, members, voters }'
}

# healthy_via NODE [NOT_LEADER]: NODE answers and sees 3 voters and a leader
# (other than NOT_LEADER), and that leader, asked directly, is a ready
# leader (Ready is only ever "yes" on the leader: its barrier for the term is
# done) with 3 voters. Prints the leader id.
healthy_via() {
	local v node state ready leader members voters
	v=$(cluster_view "$1") || return 1
	read -r node state ready leader members voters <<<"$v"
	[ "$leader" != - ] && [ "$members" -eq 3 ] && [ "$voters" -eq 3 ] || return 1
	[ -z "${2:-}" ] || [ "$leader" != "$2" ] || return 1
	if [ "$node" != "$leader" ]; then
		local want=$leader
		v=$(cluster_view "$want") || return 1
		read -r node state ready leader members voters <<<"$v"
		[ "$node" = "$want" ] && [ "$leader" = "$want" ] && [ "$members" -eq 3 ] && [ "$voters" -eq 3 ] || return 1
	fi
	[ "$state" = Leader ] && [ "$ready" = yes ] || return 1
	echo "$leader"
}

# wait_for DESCRIPTION COMMAND...: poll COMMAND every 0.5s for up to $WAIT
# seconds; its stdout on success is echoed.
wait_for() {
	local what=$1 out start
	shift
	start=$(now)
	while :; do
		if out=$("$@" 2>/dev/null); then
			log "$what: ok after $(elapsed_since "$start")s"
			[ -z "$out" ] || echo "$out"
			return 0
		fi
		if [ "$(awk -v a="$start" -v b="$(now)" -v w="$WAIT" 'BEGIN { print ((b - a) / 1e9 > w) }')" = 1 ]; then
			log "$what: timed out after ${WAIT}s"
			return 1
		fi
		sleep 0.5
	done
}

print_exports() {
	cat <<EOF
export TRUSTFED_ADDR=127.0.0.1:$TRUSTFED_N1_GRPC_PORT
export TRUSTFED_TOKEN=$(token)
export TRUSTFED_CACERT=$CERTS/ca.pem
export TRUSTFED_ADMIN_KEY=$ADMINS/alice.key
# The federation has two admins, alice and bob; a sensitive change (issuer accredit,
# federation policy set, org revoke, ...) needs both. alice's key above proposes it;
# the command prints the change id (chg-...). bob approves it:
#   $BIN admin approve CHG_ID --admin-key $ADMINS/bob.key
EOF
}

# enrol_admins: alice and bob become the federation's two admins (quorum 2:
# alice alone may add bob while there are fewer admins than that); their
# approval keys go to $ADMINS. Harmless on a cluster that has them.
enrol_admins() {
	local a list
	mkdir -p "$ADMINS" && chmod 0700 "$ADMINS" || die "mkdir $ADMINS"
	for a in alice bob; do
		[ -s "$ADMINS/$a.key" ] || "$BIN" keygen --out "$ADMINS/$a.key" >/dev/null || die "keygen $a"
	done
	list=$(cli_try n1 admin list -o json) || die "admin list via n1"
	for a in alice bob; do
		! grep -q "\"id\": *\"$a\"" <<<"$list" || continue
		cli_try n1 admin add "$a" --name "$a" --pubkey "$ADMINS/$a.key.pub" --admin-key "$ADMINS/alice.key" >/dev/null ||
			die "admin add $a via n1"
		log "admin $a enrolled (approval key $ADMINS/$a.key)"
	done
}

# ---------------------------------------------------------------- up

build() {
	command -v go >/dev/null || die "go is not installed"
	command -v docker >/dev/null || die "docker is not installed"
	local start
	start=$(now)
	if [ -n "${TRUSTFED_REF:-}" ]; then
		# Build a committed tree (git archive: read-only), e.g. while the working tree is mid-edit.
		local src rc=0
		src=$(mktemp -d "${TMPDIR:-/tmp}/trustfed-src.XXXXXX")
		{ git -C "$ROOT" archive --format=tar "$TRUSTFED_REF" | tar -x -C "$src"; } &&
			(cd "$src" && CGO_ENABLED=0 go build -trimpath -o "$BIN" ./cmd/trustfed) || rc=1
		rm -rf "$src"
		[ "$rc" = 0 ] || die "build of $TRUSTFED_REF (git archive + go build) failed"
		log "built $BIN from $TRUSTFED_REF ($(git -C "$ROOT" rev-parse --short "$TRUSTFED_REF")) ($(elapsed_since "$start")s)"
	else
		(cd "$ROOT" && CGO_ENABLED=0 go build -trimpath -o deploy/trustfed ./cmd/trustfed) || die "go build failed"
		log "built $BIN ($(elapsed_since "$start")s)"
	fi

	# Only the Dockerfile and the binary go into the build context, so the CA
	# key in certs/ and the data never reach the daemon's build cache.
	start=$(now)
	local old old_by new out
	old=$(docker image inspect -f '{{.Id}}' "$IMAGE" 2>/dev/null || true)
	old_by=$(docker image inspect -f '{{index .Config.Labels "trustfed.built-by"}}' "$IMAGE" 2>/dev/null || true)
	out=$(tar -C "$ROOT" -cf - deploy/Dockerfile deploy/trustfed |
		docker build -q --label trustfed.built-by=deploy/cluster.sh -f deploy/Dockerfile -t "$IMAGE" - 2>&1) || {
		echo "$out" >&2
		die "docker build failed"
	}
	new=$(docker image inspect -f '{{.Id}}' "$IMAGE")
	# Drop the image the tag pointed at before if this script built it (never
	# another one; fails harmlessly while a container still uses it).
	if [ -n "$old" ] && [ "$old" != "$new" ] && [ "$old_by" = deploy/cluster.sh ]; then
		docker image rm "$old" >/dev/null 2>&1 || true
	fi
	log "built image $IMAGE ${new:7:12} ($(elapsed_since "$start")s)"
}

certs() {
	local n fresh=0
	if [ ! -s "$CERTS/ca.pem" ] || [ ! -s "$CERTS/ca-key.pem" ]; then
		"$BIN" ca init --dir "$CERTS" >/dev/null || die "ca init failed"
		fresh=1
		log "created cluster CA in $CERTS"
	fi
	for n in "${NODES[@]}"; do
		local reissue=$fresh
		[ -s "$CERTS/$n.pem" ] && [ -s "$CERTS/$n-key.pem" ] || reissue=1
		# Reissue a certificate that expires within a day (when openssl is around).
		if [ "$reissue" = 0 ] && command -v openssl >/dev/null &&
			! openssl x509 -checkend 86400 -noout -in "$CERTS/$n.pem" >/dev/null 2>&1; then
			reissue=1
		fi
		if [ "$reissue" = 1 ]; then
			"$BIN" ca issue-node --dir "$CERTS" --node-id "$n" --host "$n" --host localhost --host 127.0.0.1 \
				--out-cert "$CERTS/$n.pem" --out-key "$CERTS/$n-key.pem" --force >/dev/null ||
				die "ca issue-node $n failed"
			log "issued certificate for $n (hosts $n, localhost, 127.0.0.1)"
		fi
		# The container user must read its key (each node mounts only its own).
		chmod 0644 "$CERTS/$n.pem"
		chmod 0600 "$CERTS/$n-key.pem"
		chown "$TRUSTFED_UID:$TRUSTFED_GID" "$CERTS/$n-key.pem"
	done
	chmod 0644 "$CERTS/ca.pem"
	# Every node issues member node certificates, so each reads the CA key
	# (docs/access.md: the CA key lives on each server's disk).
	chmod 0600 "$CERTS/ca-key.pem"
	chown "$TRUSTFED_UID:$TRUSTFED_GID" "$CERTS/ca-key.pem"
}

data_dirs() {
	local n
	for n in "${NODES[@]}"; do
		mkdir -p "$DATA/$n"
		chown "$TRUSTFED_UID:$TRUSTFED_GID" "$DATA/$n"
		chmod 0700 "$DATA/$n"
	done
}

cmd_up() {
	local start
	build
	certs
	data_dirs
	start=$(now)
	compose up -d || die "docker compose up failed"
	log "compose up -d ($(elapsed_since "$start")s)"
	wait_for "n1 wrote admin.token" test -s "$DATA/n1/admin.token" || {
		dump_logs
		die "n1 did not write $DATA/n1/admin.token within ${WAIT}s"
	}
	TOKEN=$(token)
	local leader
	leader=$(wait_for "3 voters with a leader via n1 (127.0.0.1:$TRUSTFED_N1_GRPC_PORT)" healthy_via n1) || {
		cli n1 status || true
		dump_logs
		die "the cluster did not reach 3 voters with a ready leader within ${WAIT}s"
	}
	enrol_admins
	cli n1 status
	echo
	log "cluster is up, leader $leader, admins alice and bob; use it with (CLI: $BIN, or bin/trustfed):"
	print_exports
}

dump_logs() {
	echo "---- docker compose ps" >&2
	compose ps >&2 || true
	echo "---- docker compose logs (last 40 lines per node)" >&2
	compose logs --no-color --tail=40 >&2 || true
}

# ---------------------------------------------------------------- down

cmd_down() {
	local all=0
	case ${1:-} in
	--all) all=1 ;;
	"") ;;
	*) die "usage: $0 down [--all]" ;;
	esac
	compose down -v --remove-orphans --timeout 15 || die "docker compose down failed"
	rm -rf "$DATA"
	if [ "$all" = 1 ]; then
		rm -rf "$CERTS" "$BIN"
		log "removed containers, network, data, certs and binary"
	else
		log "removed containers, network and data (kept $CERTS; 'down --all' removes it)"
	fi
}

# ---------------------------------------------------------------- test

STEP=""
step() {
	STEP=$*
	log "TEST: $*"
}

# Organisations the test has registered and approved so far (has_orgs checks
# all of them).
ORGS=()

# The test's key pairs and passports (private keys included) live in KEYS, a
# temp dir that cmd_test removes on every exit. ISSUER is the passport issuer
# the test accredits.
KEYS=""
ISSUER=smoke-assessors

# admin_change NODE ARGS...: an admin change (issuer accredit, federation
# policy set, ...) proposed via NODE with alice's key, then approved by bob
# via the next node: the cluster's quorum is two admins.
admin_change() {
	local node=$1 out id other
	shift
	out=$(cli_try "$node" "$@" --admin-key "$ADMINS/alice.key" -o json) || return 1
	id=$(grep -o '"chg-[0-9a-f]\{16\}"' <<<"$out" | head -1 | tr -d '"')
	[ -n "$id" ] || { log "no change id in: $(head -c 300 <<<"$out")"; return 1; }
	grep -q ADMIN_CHANGE_STATUS_PENDING <<<"$out" || { log "change $id is not PENDING after one approval of two"; return 1; }
	case $node in n1) other=n2 ;; n2) other=n3 ;; *) other=n1 ;; esac
	out=$(cli_try "$other" admin approve "$id" --admin-key "$ADMINS/bob.key" -o json) || return 1
	grep -q ADMIN_CHANGE_STATUS_APPLIED <<<"$out" || { log "change $id not APPLIED after bob's approval via $other"; return 1; }
	log "admin change $id: proposed by alice via $node, approved by bob via $other, APPLIED"
}

# cli_try NODE ARGS...: cli, retrying a transient error (gRPC Unavailable or
# DeadlineExceeded: no leader right now, an election under way) every 0.5s
# for up to $WAIT seconds; any other error fails at once. Each retry is
# logged. Writes may be retried (the CLI itself retries with the same request
# id); when a new attempt after a transient error finds an earlier attempt of
# ours applied, that counts as done: AlreadyExists (issuer accredit, org
# register, first agreement signature), "is not pending approval" (org
# approve), "is not waiting for signatures" (the second signature). What the
# test wrote is checked by reads and decisions afterwards. `check` exits 3 on
# DENY: a decision, not an error, returned as is.
cli_try() {
	local node=$1 start err rc transient=0
	shift
	start=$(now)
	while :; do
		{ if err=$(cli "$node" "$@" 2>&1 >&3); then rc=0; else rc=$?; fi; } 3>&1
		[ "$rc" -ne 0 ] || return 0
		case $err in
		*"(code Unavailable)"* | *"(code DeadlineExceeded)"*) ;;
		*"(code AlreadyExists)"* | *"is not pending approval (code FailedPrecondition)"* | *"is not waiting for signatures (code FailedPrecondition)"*)
			if [ "$transient" = 1 ]; then
				log "'$*' via $node: $(grep -o '(code [A-Za-z]*)' <<<"$err" | tail -1) after a transient error: our earlier attempt was applied"
				return 0
			fi
			printf '%s\n' "$err" >&2
			return "$rc"
			;;
		*)
			[ -z "$err" ] || printf '%s\n' "$err" >&2
			return "$rc"
			;;
		esac
		transient=1
		if [ "$(awk -v a="$start" -v b="$(now)" -v w="$WAIT" 'BEGIN { print ((b - a) / 1e9 > w) }')" = 1 ]; then
			printf '%s\n' "$err" >&2
			log "'$*' via $node: still failing after ${WAIT}s"
			return "$rc"
		fi
		log "'$*' via $node: transient error, retrying: $(head -c 200 <<<"$err" | tr '\n' ' ')"
		sleep 0.5
	done
}

# has_orgs CLIFN NODE [--stale]: NODE itself answers with every organisation
# in ORGS, each ACTIVE (registered and approved); CLIFN is cli (fail at once,
# for polling) or cli_try.
has_orgs() {
	local fn=$1 node=$2 org out
	shift 2
	for org in "${ORGS[@]}"; do
		out=$("$fn" "$node" org get "$org" "$@" -o json) || return 1
		grep -qE "\"id\": +\"$org\"" <<<"$out" && grep -qE '"status": +"ORGANIZATION_STATUS_ACTIVE"' <<<"$out" &&
			grep -qE "\"nodeId\": +\"$node\"" <<<"$out" || return 1
	done
}

# decision CLIFN NODE WANT ARGS...: `check ARGS` asked by the --from
# organisation's member node and answered by NODE is WANT (ALLOW: exit 0,
# DENY: exit 3). Prints the decision if it is not.
decision() {
	local fn=$1 node=$2 want=$3 rc=0 out from="" prev="" a
	shift 3
	for a in "$@"; do
		[ "$prev" != --from ] || from=$a
		prev=$a
	done
	[ -n "$from" ] || { printf 'decision: no --from in: check %s\n' "$*" >&2; return 1; }
	out=$(MEMBER=$from "$fn" "$node" check "$@") || rc=$?
	case $want:$rc in ALLOW:0 | DENY:3) return 0 ;; esac
	printf 'check %s via %s: exit %s, want %s\n%s\n' "$*" "$node" "$rc" "$want" "$out" >&2
	return 1
}

# new_member ORG LEVEL: ORG's key pair and a passport for it at LEVEL from
# $ISSUER, in $KEYS (offline: keygen and issuer passport issue).
new_member() {
	"$BIN" keygen --out "$KEYS/$1.key" >/dev/null || die "keygen $1"
	"$BIN" issuer passport issue --issuer-key "$KEYS/$ISSUER.key" --issuer-id "$ISSUER" --org-id "$1" \
		--org-pubkey "$KEYS/$1.key.pub" --level "$2" --jurisdiction EU --out "$KEYS/$1.jwt" >/dev/null ||
		die "issuer passport issue for $1"
}

# register_member NODE ORG NAME LEVEL: key and passport for ORG, then via
# NODE: ORG registers itself (signed with its key; PENDING), the admin
# approves it (ACTIVE), ORG enrols its member node gw-1 (the node's key,
# signed with ORG's key) and gw-1 gets its client certificate by
# challenge-response (MEMBER=ORG cli uses it). Appends ORG to ORGS.
register_member() {
	local node=$1 org=$2 name=$3 level=$4
	new_member "$org" "$level"
	cli_try "$node" org register --id "$org" --name "$name" --jurisdiction EU --level "$level" \
		--key "$KEYS/$org.key" --passport "$KEYS/$org.jwt" >/dev/null || die "org register $org via $node"
	cli_try "$node" org approve "$org" >/dev/null || die "org approve $org via $node"
	"$BIN" keygen --out "$KEYS/$org-gw.key" >/dev/null || die "keygen $org-gw"
	cli_try "$node" member enrol "$org" gw-1 --org-key "$KEYS/$org.key" --node-pubkey "$KEYS/$org-gw.key.pub" >/dev/null ||
		die "member enrol $org gw-1 via $node"
	cli_try "$node" member cert "$org" gw-1 --node-key "$KEYS/$org-gw.key" --out-cert "$KEYS/$org-gw.crt" >/dev/null ||
		die "member cert $org gw-1 via $node"
	ORGS+=("$org")
}

# failover_round N: stop the leader, wait for a new one via a survivor, read
# and write through the survivor, restart the old leader, wait until it has
# caught up. Appends "leader>newleader" to ROUNDS and timings to TOOK.
ROUNDS=()
TOOK=()
failover_round() {
	local r=$1 start leader survivor newleader n org t_stop t_fail t_rw t_start t_rejoin t_catch
	step "round $r: find the leader"
	leader=$(wait_for "round $r: 3 voters with a ready leader via n1" healthy_via n1) ||
		die "round $r: no healthy cluster view via n1"
	for n in "${NODES[@]}"; do [ "$n" = "$leader" ] || { survivor=$n; break; }; done
	log "round $r: leader is $leader; will watch via $survivor (127.0.0.1:$(grpc_port "$survivor"))"

	step "round $r: stop the leader container $leader (docker compose stop)"
	start=$(now)
	compose stop --timeout 15 "$leader" >/dev/null 2>&1 || die "compose stop $leader"
	t_stop=$(elapsed_since "$start")

	step "round $r: wait for a new leader via $survivor"
	start=$(now)
	newleader=$(wait_for "round $r: new leader (not $leader) via $survivor" healthy_via "$survivor" "$leader") ||
		die "round $r: no new ready leader (other than $leader) via $survivor within ${WAIT}s"
	t_fail=$(elapsed_since "$start")
	log "round $r: new leader is $newleader"
	cli "$survivor" status >&2

	step "round $r: read the data back via $survivor, register + approve an organisation with $leader down"
	start=$(now)
	has_orgs cli_try "$survivor" || die "round $r: organisations ${ORGS[*]} not readable (ACTIVE) via $survivor"
	decision cli_try "$survivor" ALLOW --from acme-bank --to st-mary --action task_send ||
		die "round $r: check acme-bank -> st-mary is not ALLOW via $survivor"
	org=written-in-round-$r
	register_member "$survivor" "$org" "Written in round $r" 2
	has_orgs cli_try "$survivor" || die "round $r: $org not readable (ACTIVE) via $survivor"
	decision cli_try "$survivor" DENY --from "$org" --to acme-bank --action task_send ||
		die "round $r: check $org -> acme-bank (no agreement) is not DENY via $survivor"
	t_rw=$(elapsed_since "$start")

	step "round $r: start $leader again (docker compose start)"
	start=$(now)
	compose start "$leader" >/dev/null 2>&1 || die "compose start $leader"
	t_start=$(elapsed_since "$start")

	step "round $r: wait for $leader to rejoin and catch up"
	start=$(now)
	wait_for "round $r: $leader sees 3 voters with a ready leader" healthy_via "$leader" >/dev/null ||
		die "round $r: $leader did not rejoin (3 voters, ready leader) within ${WAIT}s"
	t_rejoin=$(elapsed_since "$start")
	start=$(now)
	# --stale is answered from $leader's own replica: it has applied what it missed.
	wait_for "round $r: $leader's replica has all ${#ORGS[@]} organisations ACTIVE (stale read)" has_orgs cli "$leader" --stale ||
		die "round $r: $leader did not catch up (stale read of ${ORGS[*]} within ${WAIT}s)"
	has_orgs cli_try "$leader" || die "round $r: linearizable read via $leader"
	t_catch=$(elapsed_since "$start")
	cli "$leader" status >&2
	ROUNDS+=("$leader>$newleader")
	TOOK+=("round $r ($leader stopped, $newleader took over): compose stop ${t_stop}s, new leader ${t_fail}s, read+register+approve ${t_rw}s, compose start ${t_start}s, rejoined ${t_rejoin}s, caught up ${t_catch}s")
}

cmd_test() {
	local t_all start t_up t_writes t_down r n agr out rounds=${TRUSTFED_ROUNDS:-2}
	TEST_OK=0
	t_all=$(now)
	on_exit() {
		local rc=$?
		[ -z "$KEYS" ] || rm -rf "$KEYS"
		if [ "$TEST_OK" != 1 ]; then
			echo "FAIL: step '$STEP' failed (exit $rc)" >&2
			dump_logs
			if [ "${TRUSTFED_KEEP:-}" = 1 ]; then
				echo "TRUSTFED_KEEP=1: cluster left running; remove it with: $0 down" >&2
				exit 1
			fi
		fi
		compose down -v --remove-orphans --timeout 15 >/dev/null 2>&1 || echo "WARN: compose down failed" >&2
		rm -rf "$DATA"
		[ "$TEST_OK" = 1 ] || exit 1
	}
	trap on_exit EXIT
	trap 'exit 1' INT TERM HUP # so that on_exit cleans up then too

	step "clean start (down -v, remove data)"
	compose down -v --remove-orphans --timeout 15 >/dev/null 2>&1 || true
	rm -rf "$DATA"

	step "up"
	start=$(now)
	cmd_up >/dev/null
	t_up=$(elapsed_since "$start")
	TOKEN=$(token)

	step "check the CLI has the verbs this test uses"
	local verb help
	for verb in "keygen" "issuer accredit" "issuer passport issue" "org register" "org approve" "org get" "org list" \
		"federation policy set" "agreement propose" "agreement sign" "check" "admin add" "admin approve" \
		"member enrol" "member cert"; do
		# shellcheck disable=SC2086
		# (the help in a variable first: grep -q quitting early would SIGPIPE the CLI under pipefail)
		help=$("$BIN" $verb --help 2>/dev/null) && grep -q "trustfed $verb" <<<"$help" ||
			die "this build's CLI has no '$verb' (the smoke test uses the membership CLI of 9b7a883: org register/approve, agreement propose/sign, issuer accredit; and member enrol/cert of 5788ab5). Run with TRUSTFED_REF=<a commit with those verbs> or update cmd_test in $0"
	done

	step "set up a federation via n1 (127.0.0.1:$TRUSTFED_N1_GRPC_PORT): issuer, 2 members with a member node each, an agreement"
	start=$(now)
	KEYS=$(mktemp -d "${TMPDIR:-/tmp}/trustfed-smoke.XXXXXX") || die "mktemp"
	log "keys and passports in $KEYS (removed at exit)"
	"$BIN" keygen --out "$KEYS/$ISSUER.key" >/dev/null || die "keygen $ISSUER"
	# The two federation admins `up` enrolled, as its exports tell a user.
	out=$(cli_try n1 admin list -o json) || die "admin list via n1"
	grep -q '"id": *"alice"' <<<"$out" && grep -q '"id": *"bob"' <<<"$out" || die "up did not enrol alice and bob: $(head -c 300 <<<"$out")"
	grep -q "^export TRUSTFED_ADMIN_KEY=$ADMINS/alice.key$" <<<"$(print_exports)" || die "the exports name no admin key"
	admin_change n1 issuer accredit "$ISSUER" --name "Smoke Test Assessors" --pubkey "$KEYS/$ISSUER.key.pub" --max-level 4 ||
		die "issuer accredit $ISSUER via n1"
	register_member n1 acme-bank "Acme Bank" 3
	register_member n1 st-mary "St Mary Hospital" 3
	has_orgs cli_try n1 || die "organisations not readable (ACTIVE) via n1"
	decision cli_try n1 DENY --from acme-bank --to st-mary --action task_send ||
		die "check acme-bank -> st-mary before any agreement is not DENY via n1"
	# New members are capped at level 2 for 30 days; lift the cap for everyone.
	admin_change n1 federation policy set --onboarding-cap 4 || die "federation policy set --onboarding-cap 4 via n1"
	out=$(cli_try n1 agreement propose acme-bank st-mary --actions task_send,context_share,ping --valid 30d -o json) ||
		die "agreement propose acme-bank st-mary via n1"
	agr=$(sed -n 's/^    "id": \{1,\}"\(agr-[^"]*\)",$/\1/p' <<<"$out") # .agreement.id
	[ -n "$agr" ] || die "agreement propose: no .agreement.id in: $(head -c 300 <<<"$out")"
	log "agreement $agr proposed (PENDING)"
	cli_try n1 agreement sign "$agr" --org acme-bank --key "$KEYS/acme-bank.key" >/dev/null ||
		die "agreement sign $agr --org acme-bank via n1"
	cli_try n1 agreement sign "$agr" --org st-mary --key "$KEYS/st-mary.key" >/dev/null ||
		die "agreement sign $agr --org st-mary via n1"
	out=$(cli_try n1 agreement get "$agr" -o json) && grep -qE '"status": +"AGREEMENT_STATUS_ACTIVE"' <<<"$out" ||
		die "agreement $agr is not ACTIVE after both signatures"
	decision cli_try n1 ALLOW --from acme-bank --to st-mary --action context_share ||
		die "check acme-bank -> st-mary context_share is not ALLOW via n1"
	decision cli_try n1 ALLOW --from acme-bank --to st-mary --action task_send ||
		die "check acme-bank -> st-mary task_send is not ALLOW via n1"
	t_writes=$(elapsed_since "$start")

	# Round 1 stops n1 (the bootstrap node); round 2 stops the new leader, a
	# node started with -join, whose restart joins again through n1.
	for ((r = 1; r <= rounds; r++)); do failover_round "$r"; done

	step "metrics: a monitor token reads every node's /metrics; exactly one node is the ready leader"
	out=$(cli_try n1 -o json token create --role monitor --description "cluster smoke test scraper" --ttl 1h) ||
		die "token create --role monitor via n1"
	local monitor
	monitor=$(grep -o '"tf_[A-Za-z0-9_-]*"' <<<"$out" | tr -d '"' | head -1) # .secret, the only tf_ string
	[ -n "$monitor" ] || die "token create: no .secret in: $(head -c 300 <<<"$out")"
	[ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 --cacert "$CERTS/ca.pem" "https://127.0.0.1:$(http_port n2)/metrics")" = 401 ] ||
		die "n2's /metrics without a token is not 401"
	wait_for "every node's metrics know a leader; one is the ready leader" metrics_agree "$monitor" >/dev/null ||
		die "the nodes' metrics do not agree on one ready leader"

	step "final check: every node's replica has every organisation ACTIVE and the agreement"
	for n in "${NODES[@]}"; do
		wait_for "$n's replica has all ${#ORGS[@]} organisations ACTIVE" has_orgs cli "$n" --stale >/dev/null ||
			die "$n is missing organisations"
		wait_for "$n's replica decides acme-bank -> st-mary task_send ALLOW (check --stale)" \
			decision cli "$n" ALLOW --from acme-bank --to st-mary --action task_send --stale >/dev/null ||
			die "$n does not ALLOW acme-bank -> st-mary from its own replica"
	done
	[ "$(cli_try n1 org list | grep -cE "^($(
		IFS='|'
		echo "${ORGS[*]}"
	))[[:space:]].*[[:space:]]ACTIVE[[:space:]]")" = "${#ORGS[@]}" ] ||
		die "org list via n1 does not show the ${#ORGS[@]} organisations ACTIVE"

	step "down"
	start=$(now)
	TEST_OK=1
	trap - EXIT INT TERM HUP
	rm -rf "$KEYS"
	compose down -v --remove-orphans --timeout 15 >/dev/null 2>&1 || die "compose down failed"
	rm -rf "$DATA"
	t_down=$(elapsed_since "$start")

	echo
	echo "PASS: 3-node cluster up; via n1: 2 admins enrolled, issuer accredited (2 admin approvals), 2 organisations registered (own key + passport) and approved,"
	echo "      each with a member node enrolled (signed by the organisation) and certified by challenge-response; every check asked by a member node;"
	echo "      onboarding cap lifted, agreement proposed and signed by both (DENY before, ALLOW after);"
	echo "      $rounds fail-over round(s) (stopped>new leader: ${ROUNDS[*]}), each: data and ALLOW read back and one"
	echo "      organisation registered + approved + its member node enrolled with one node down via a survivor, stopped node restarted and caught up;"
	echo "      a monitor token reads every node's /metrics and exactly one reports itself the ready leader;
      finally every node's own replica has all ${#ORGS[@]} organisations ACTIVE and ALLOWs acme-bank -> st-mary."
	echo "timings: up ${t_up}s, federation setup ${t_writes}s, down ${t_down}s, total $(elapsed_since "$t_all")s"
	printf '  %s\n' "${TOOK[@]}"
}

# ---------------------------------------------------------------- main

usage() {
	awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0" >&2
	exit 2
}

cmd=${1:-}
[ $# -eq 0 ] || shift
case $cmd in
up) cmd_up ;;
down) cmd_down "$@" ;;
test) cmd_test ;;
status) n=${1:-n1} && cli "n${n#n}" status ;;
cli)
	[ $# -ge 1 ] || die "usage: $0 cli NODE ARGS... (NODE n1, n2 or n3)"
	node=n${1#n}
	shift
	cli "$node" "$@"
	;;
logs) compose logs "$@" ;;
env) print_exports ;;
ps) compose ps ;;
*) usage ;;
esac
