# trustfed — common tasks. `make run` starts a dev server; `make test` runs every test.
GO        ?= go
BIN       := $(abspath bin)
BUF_VERSION := v1.75.0
# govulncheck and the Go vulnerability database it reads, both pinned: `make vulncheck` builds the
# database from the golang.org/x/vulndb module (fetched through the module proxy) and scans offline.
GOVULNCHECK_VERSION := v1.10.0
# staticcheck, pinned like the other tools.
STATICCHECK_VERSION := v0.8.2
VULNDB_VERSION := v0.0.0-20261105234957-e22db6528018
VULNDB_DIR := $(BIN)/vulndb-$(VULNDB_VERSION)
export PATH := $(BIN):$(PATH)
# go.mod pins the toolchain (a release with the standard library's security fixes); `auto` lets
# the go command fetch and use it where the machine's default says `local`. An explicit
# GOTOOLCHAIN in the environment still wins.
export GOTOOLCHAIN ?= auto
# The version `trustfed version`, `status` and /metrics report: the nearest tag and the commit
# (with -dirty for uncommitted changes); "dev" outside a git checkout.
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT    ?= $(shell git rev-parse HEAD 2>/dev/null)
LDFLAGS   := -X main.version=$(VERSION) -X main.commit=$(COMMIT)

.PHONY: help run build test soak demo ui-screenshots fuzz-smoke test-short lint staticcheck tidy-check vulncheck fmt-check proto proto-check proto-breaking tools bench bench-etcd bench-scale docker docker-cluster docker-cluster-down docker-cluster-test clean

## help: list the targets and what each does
help:
	@sed -n 's/^## \([a-z-]*\): /\1\t/p' $(MAKEFILE_LIST) | awk -F '\t' '{printf "  %-22s %s\n", $$1, $$2}'

# Where `make run` keeps the dev server's data: the same federation and admin token on every run.
# `make run DEV_DATA=` starts from scratch in a temporary dir that is removed on exit.
DEV_DATA  ?= $(abspath .dev-data)

## run: build and start a single-node dev server on loopback (prints the admin token); its data stays in DEV_DATA (.dev-data)
run: build
	@if [ -n "$(DEV_DATA)" ]; then echo "dev data in $(DEV_DATA): kept across runs (same federation and admin token); rm -rf it to start over, or make run DEV_DATA= for a temporary one"; \
	else echo "dev data in a temporary dir, removed when the server stops"; fi
	$(BIN)/trustfed server -dev $(if $(DEV_DATA),-data-dir $(DEV_DATA))

## build: the trustfed binary in bin/
build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/trustfed ./cmd/trustfed

## demo: two organisations' gateways exchange tasks through an in-process dev registry; one is revoked halfway
demo:
	$(GO) run ./examples/two-gateways

## test: every unit, cluster and end-to-end test (race detector on), then a short fuzzing run
test:
	$(GO) test -race -count=1 -timeout 15m ./...
	$(MAKE) fuzz-smoke

DURATION ?= 10m
SOAK_NODES ?= 3
SOAK_FAULT_EVERY ?= 1m
SOAKFLAGS ?=
# SOAK_FAULTS: "|"-separated substrings of fault names to draw from (default: all), e.g.
# SOAK_FAULTS='kill -9 the leader|kill -9 a follower|isolate the leader' for AG-783's availability target.
SOAK_FAULTS ?=
## soak: DURATION (default 10m) of load on a SOAK_NODES-node cluster with a random fault (kill,
## pause, partition, one-way cut, slow links, full crash, node replaced, clock jump, slow disk)
## every SOAK_FAULT_EVERY; prints operations,
## faults, linearizability violations, lost writes and availability (docs/reliability.md).
## TRUSTFED_FAULTS_SEED repeats a run; SOAKFLAGS=-race builds the servers with the race detector.
soak:
	TRUSTFED_SOAK_DURATION=$(DURATION) TRUSTFED_SOAK_NODES=$(SOAK_NODES) TRUSTFED_SOAK_FAULT_EVERY=$(SOAK_FAULT_EVERY) TRUSTFED_SOAK_FAULTS='$(SOAK_FAULTS)' \
		$(GO) test $(SOAKFLAGS) -count=1 -timeout 24h -run '^TestFaultsSoak$$' -v ./system_test/

FUZZTIME ?= 20000x
## fuzz-smoke: each fuzz target for FUZZTIME executions (seed corpora also run in every `go test`).
## A count, not a duration: go1.26's fuzz coordinator can fail a duration run with a spurious
## "context deadline exceeded" at the boundary on a loaded machine (golang/go#75804, fixed in go1.27).
fuzz-smoke:
	$(GO) test -run '^$$' -fuzz '^FuzzParsePassport$$' -fuzztime $(FUZZTIME) ./attestation/
	$(GO) test -run '^$$' -fuzz '^FuzzVerifyPassport$$' -fuzztime $(FUZZTIME) ./attestation/
	$(GO) test -run '^$$' -fuzz '^FuzzAgreementVerification$$' -fuzztime $(FUZZTIME) ./registry/state/
	$(GO) test -run '^$$' -fuzz '^FuzzOpenCheckpoint$$' -fuzztime $(FUZZTIME) ./attestation/
	$(GO) test -run '^$$' -fuzz '^FuzzBearerHeader$$' -fuzztime $(FUZZTIME) ./registry/
	$(GO) test -run '^$$' -fuzz '^FuzzRequestDecoding$$' -fuzztime $(FUZZTIME) ./registry/
	$(GO) test -run '^$$' -fuzz '^FuzzGetMemberChallenge$$' -fuzztime $(FUZZTIME) ./registry/
	$(GO) test -run '^$$' -fuzz '^FuzzIssueMemberCertificate$$' -fuzztime $(FUZZTIME) ./registry/
	$(GO) test -run '^$$' -fuzz '^FuzzRESTChecks$$' -fuzztime $(FUZZTIME) ./registry/
	$(GO) test -run '^$$' -fuzz '^FuzzJSONErrorField$$' -fuzztime $(FUZZTIME) ./registry/
	$(GO) test -run '^$$' -fuzz '^FuzzCheck$$' -fuzztime $(FUZZTIME) ./ids/
	$(GO) test -run '^$$' -fuzz '^FuzzScanApply$$' -fuzztime $(FUZZTIME) ./client/pii/
	$(GO) test -run '^$$' -fuzz '^FuzzInspect$$' -fuzztime $(FUZZTIME) ./client/threat/
	$(GO) test -run '^$$' -fuzz '^FuzzOpenEnvelope$$' -fuzztime $(FUZZTIME) ./client/gateway/

UI_SCREENSHOTS ?= $(CURDIR)/ui-screenshots
## ui-screenshots: drive the web dashboard in headless Chromium and save a PNG of each page in UI_SCREENSHOTS
ui-screenshots:
	mkdir -p $(UI_SCREENSHOTS)
	TRUSTFED_UI_SCREENSHOTS=$(UI_SCREENSHOTS) $(GO) test -count=1 -run '^TestDashboardInChromium$$' -v ./system_test/
	@echo "screenshots in $(UI_SCREENSHOTS)"

## test-short: the fast tests only
test-short:
	$(GO) test -short -count=1 ./...

## lint: gofmt, go vet, staticcheck, go.mod tidy, buf lint and govulncheck
lint: tools fmt-check tidy-check
	$(GO) vet ./...
	$(MAKE) staticcheck
	$(BIN)/buf lint
	$(MAKE) vulncheck

## staticcheck: the staticcheck analyzers (pinned version)
staticcheck: $(BIN)/staticcheck
	$(BIN)/staticcheck ./...

$(BIN)/staticcheck:
	GOBIN=$(BIN) $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

## tidy-check: fail if go.mod or go.sum is not what `go mod tidy` makes
tidy-check:
	$(GO) mod tidy -diff

## vulncheck: govulncheck against the pinned vulnerability database, built locally (offline scan)
vulncheck: $(BIN)/govulncheck $(VULNDB_DIR)/index/db.json
	$(BIN)/govulncheck -db file://$(VULNDB_DIR) ./...

$(BIN)/govulncheck:
	GOBIN=$(BIN) $(GO) install golang.org/x/vuln/cmd/govulncheck@$(GOVULNCHECK_VERSION)

$(VULNDB_DIR)/index/db.json:
	@dir=$$($(GO) mod download -json golang.org/x/vulndb@$(VULNDB_VERSION) | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$$/\1/p'); \
	if [ -z "$$dir" ]; then echo "cannot download golang.org/x/vulndb@$(VULNDB_VERSION)"; exit 1; fi; \
	rm -rf $(VULNDB_DIR).tmp && cd "$$dir" && $(GO) run ./cmd/indexdb -vulns data/osv -out $(VULNDB_DIR).tmp
	mv $(VULNDB_DIR).tmp $(VULNDB_DIR)

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' | grep -v '\.pb\.go$$\|\.pb\.gw\.go$$')); \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi

## tools: buf (pinned) and the protoc plugins pinned as tools in go.mod, into bin/
tools: $(BIN)/buf
	GOBIN=$(BIN) $(GO) install tool

$(BIN)/buf:
	GOBIN=$(BIN) $(GO) install github.com/bufbuild/buf/cmd/buf@$(BUF_VERSION)

## proto: regenerate Go, gateway and OpenAPI code from proto/ (offline, local plugins)
proto: tools
	$(BIN)/buf generate

## proto-check: fail if the committed generated code is not what `make proto` makes
proto-check: proto
	@if [ -n "$$(git status --porcelain -- proto)" ]; then \
		echo "generated code in proto/ is stale: run 'make proto' and commit"; git status --porcelain -- proto; exit 1; fi

BREAKING_AGAINST ?= HEAD~1
## proto-breaking: fail if proto/ changed incompatibly since BREAKING_AGAINST (default: the previous commit)
## (buf.yaml's WIRE_JSON rules). command.proto is the Raft log format: it must never break.
proto-breaking: tools
	@if ! git rev-parse --verify --quiet '$(BREAKING_AGAINST)^{commit}' >/dev/null; then \
		echo "proto-breaking: skipped: no commit $(BREAKING_AGAINST) to compare with"; exit 0; fi; \
	echo "buf breaking against $(BREAKING_AGAINST)"; \
	$(BIN)/buf breaking --against '.git#ref=$(BREAKING_AGAINST)'

## bench: Go benchmarks (numbers go to BENCHMARKS.md)
bench:
	$(GO) test -run '^$$' -bench . -skip CascadeEndToEnd -benchmem -count=1 ./...
	$(GO) test -run '^$$' -bench CascadeEndToEnd -benchtime 1x -count=1 ./system_test/

BENCH_DURATION ?= 10s
BENCH_CALLERS  ?= 64
BENCH_CONNS    ?= 4
## bench-etcd: etcd (Debian's etcd-server/etcd-client, apt-get installed if missing) and `trustfed bench` on the same shapes; writes the ratio table into BENCHMARKS.md
## (docs/benchmarks.md; the etcd load generator is its own module, internal/bench/etcdbench)
bench-etcd: build
	@if ! command -v etcd >/dev/null; then 		echo "etcd not found: installing Debian's etcd-server and etcd-client with apt-get"; 		sudo=$$( [ "$$(id -u)" = 0 ] || echo sudo ); 		$$sudo apt-get update && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y --no-install-recommends etcd-server etcd-client; 	fi
	cd internal/bench/etcdbench && $(GO) run . -etcd "$$(command -v etcd)" -trustfed $(BIN)/trustfed \
		-duration $(BENCH_DURATION) -callers $(BENCH_CALLERS) -conns $(BENCH_CONNS) -benchmarks $(abspath BENCHMARKS.md)

## bench-scale: issue 19's scale run (NOT in make test; tens of minutes, ~5 GiB of temporary disk):
## the audit log grown to SCALE_AUDIT entries, then a 3-node loopback cluster preloaded with
## SCALE_ORGS / SCALE_AGREEMENTS / SCALE_MEMBERS and measured by internal/bench/scale/measure.sh
SCALE_AUDIT      ?= 10000000
SCALE_ORGS       ?= 10000
SCALE_AGREEMENTS ?= 20000
SCALE_MEMBERS    ?= 20000
bench-scale: build
	TRUSTFED_AUDIT_SCALE_MAX=$(SCALE_AUDIT) $(GO) test -run '^$$' -bench BenchmarkScale -benchtime 2000x -timeout 60m -v ./registry/audit/ | grep -E 'grew|entries='
	internal/bench/scale/run.sh $(BIN)/trustfed $(SCALE_ORGS) $(SCALE_AGREEMENTS) $(SCALE_MEMBERS)

## docker: the FROM-scratch image of deploy/Dockerfile (context: the Dockerfile and the binary only)
docker:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o deploy/trustfed ./cmd/trustfed
	tar -cf - deploy/Dockerfile deploy/trustfed | docker build -f deploy/Dockerfile -t trustfed:dev -

## docker-cluster: 3-node compose cluster on loopback (prints the exports)
docker-cluster:
	deploy/cluster.sh up

## docker-cluster-down: stop the compose cluster, remove its containers and data (keeps the certs)
docker-cluster-down:
	deploy/cluster.sh down

## docker-cluster-test: up, fail-over smoke test with the CLI, down
docker-cluster-test:
	deploy/cluster.sh test

## clean: remove bin/ and the image's binary
clean:
	rm -rf bin deploy/trustfed
