# vmre — see README.md. Every target runs from a fresh clone: tools are
# built through `go tool` from tools/go.mod on first use.

GO       ?= go
BUF      := $(GO) tool -modfile=tools/go.mod buf
STATICCHECK := $(GO) tool -modfile=tools/go.mod staticcheck
BIN      := bin
PKGS     := ./...
BENCH    ?= .
BENCHTIME ?= 20x
BENCHCOUNT ?= 6
# BenchmarkRegistryLoadLarge (64 files of 100 MB) and BenchmarkNode64 (a node
# of 64 VMs) take seconds an op: they run apart, with fewer ops, in a whole
# `make bench` (or with BENCH_LARGE='RegistryLoadLarge|Node64').
# The peers' benchmarks (bench/peers, a module of its own) run in a whole
# `make bench` too, or alone with `make bench-peers`.
ifeq ($(BENCH),.)
BENCH_LARGE ?= RegistryLoadLarge|Node64
BENCH_PEERS ?= 1
endif
# AvalancheGo registers vm/runtime/runtime.proto, as vmre's copy of the
# rpcchainvm handshake does: one process holding both must not panic on it.
PEERS_LDFLAGS := -X=google.golang.org/protobuf/reflect/protoregistry.conflictPolicy=ignore
BENCHTIME_LARGE ?= 1x
BENCHCOUNT_LARGE ?= 5
FUZZTIME ?= 30s
# How long make test fuzzes the path of untrusted bytes (FuzzPipeline).
TEST_FUZZTIME ?= 10s
STRESS_RUNS ?= 5
STRESS_PKGS ?= $(PKGS)
STRESS_LOAD ?= $(shell getconf _NPROCESSORS_ONLN 2>/dev/null || echo 2)
# The systems besides Linux that every package must build for (make lint).
CROSS_GOOS ?= windows darwin freebsd
# The release the protos must stay wire-compatible with (buf breaking): the
# first landing of vmre.
BREAKING_AGAINST ?= 0147f4e7ae4aa16a7e8f12dd2403fb374df90f00
# The Kubernetes manifests' tests: a module of their own (test/k8s/go.mod),
# so that the k8s.io modules stay out of vmre's go.mod.
K8STEST  := test/k8s
# The TypeScript example VM: its packages come from npm with its lockfile.
TSVM     := examples/typescript-vm
TSVM_DEPS := $(TSVM)/node_modules/.package-lock.json
# xsvm, AvalancheGo's example rpcchainvm plugin, built from its public
# module: the sandbox's tests run it as a VM that nobody here wrote.
XSVM     := sandbox/testdata/xsvm

.PHONY: all generate lint check-generated examples test build run bench bench-peers fuzz soak stress clean

all: build

## generate: rewrite gen/ and the TypeScript example's src/gen/ from the protos with buf
generate: $(TSVM_DEPS)
	$(BUF) generate
	$(BUF) generate --template $(TSVM)/buf.gen.yaml

## lint: buf lint, buf format, buf breaking, gofmt, go vet, staticcheck, and
## a build of every package for each of CROSS_GOOS
lint:
	$(BUF) lint
	$(BUF) format --diff --exit-code
	$(BUF) breaking --against '.git#ref=$(BREAKING_AGAINST)'
	@out=$$(gofmt -l $$(git ls-files '*.go' | grep -v '^gen/')); \
	  if [ -n "$$out" ]; then echo "gofmt would change: $$out"; exit 1; fi
	$(GO) vet $(PKGS)
	cd $(K8STEST) && $(GO) vet ./...
	$(STATICCHECK) $(PKGS)
	@set -e; for os in $(CROSS_GOOS); do \
	  echo "GOOS=$$os $(GO) build $(PKGS)"; GOOS=$$os $(GO) build $(PKGS); done

## check-generated: fail when generated code differs from what the protos generate
check-generated: generate
	@if [ -n "$$(git status --porcelain -- gen/ $(TSVM)/src/gen/)" ]; then \
	  git status --short -- gen/ $(TSVM)/src/gen/; git diff --stat -- gen/ $(TSVM)/src/gen/; \
	  echo "generated code is stale: run 'make generate' and commit gen/ and $(TSVM)/src/gen/"; exit 1; fi

## examples: install the TypeScript example's packages (npm ci, which also
## compiles it to dist/) and recompile it when its sources change; build
## xsvm for the sandbox's tests
examples: $(TSVM)/dist/main.js $(XSVM)/xsvm

$(XSVM)/xsvm: $(XSVM)/go.mod $(XSVM)/go.sum
	cd $(XSVM) && $(GO) build -o xsvm github.com/ava-labs/avalanchego/vms/example/xsvm/cmd/xsvm

$(TSVM_DEPS): $(TSVM)/package.json $(TSVM)/package-lock.json
	cd $(TSVM) && npm ci --no-audit --no-fund

$(TSVM)/dist/main.js: $(TSVM_DEPS) $(TSVM)/tsconfig.json $(shell find $(TSVM)/src -name '*.ts' 2>/dev/null)
	cd $(TSVM) && npm run --silent build
	@touch $@

## test: lint, check generated code is fresh, build the examples, run every
## test with the race detector, the Kubernetes manifests' module, then fuzz
## the path of untrusted bytes (names and VM output through a whole node:
## registry, supervisor, metrics, admin, terminal rendering) for TEST_FUZZTIME
test: lint check-generated examples
	$(GO) test -race -count=1 -timeout 8m $(PKGS)
	cd $(K8STEST) && $(GO) test -count=1 -timeout 5m ./...
	$(GO) test -run '^$$' -fuzz '^FuzzPipeline$$' -fuzztime $(TEST_FUZZTIME) ./internal/safetext/

## build: build the vmre CLI and the example VM into bin/
build:
	$(GO) build -o $(BIN)/vmre ./cmd/vmre
	$(GO) build -o $(BIN)/examplevm ./cmd/examplevm

## run: build, then launch the example VM under vmre (Ctrl-C stops both)
run: build
	$(BIN)/vmre run --listen 127.0.0.1:8080 $(BIN)/examplevm

## bench: the benchmarks of docs/PERFORMANCE.md; RegistryLoadLarge and
## Node64 run apart, BENCHTIME_LARGE ops BENCHCOUNT_LARGE times, then the peers
bench:
	$(GO) test -run '^$$' -bench '$(BENCH)' -skip 'RegistryLoadLarge|Node64' -benchtime $(BENCHTIME) -count $(BENCHCOUNT) ./bench/
	@if [ -n '$(BENCH_LARGE)' ]; then set -x; \
	  $(GO) test -run '^$$' -bench '$(BENCH_LARGE)' -benchtime $(BENCHTIME_LARGE) -count $(BENCHCOUNT_LARGE) ./bench/; fi
	@if [ -n '$(BENCH_PEERS)' ]; then $(MAKE) --no-print-directory bench-peers; fi

## bench-peers: vmre against AvalancheGo's subprocess runtime and
## hashicorp/go-plugin, with the floor, in one run (bench/peers, a module of
## its own, so that vmre's go.mod does not take their dependencies)
bench-peers:
	cd bench/peers && $(GO) test -ldflags='$(PEERS_LDFLAGS)' -run '^$$' -bench 'Peers' -benchtime $(BENCHTIME) -count $(BENCHCOUNT) .

## fuzz: run each fuzz target for FUZZTIME. The targets are found in the
## sources: `go test -list` would run every package's TestMain, which builds
## vmre and tools, and fails where the examples are not built.
fuzz:
	@set -e; for p in $$($(GO) list -f '{{.ImportPath}}={{.Dir}}' $(PKGS)); do \
	  pkg=$${p%%=*}; dir=$${p#*=}; \
	  for f in $$(sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(.*/\1/p' "$$dir"/*_test.go 2>/dev/null); do \
	    echo "== $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f\$$" -fuzztime $(FUZZTIME) $$pkg; \
	  done; done

## soak: 1000 launch/stop cycles, checking for leaks
soak:
	VMRE_SOAK=1000 $(GO) test -run '^TestSoak$$' -count=1 -timeout 30m -v ./launcher/

## stress: every test with -race, STRESS_RUNS times in a row, while STRESS_LOAD
## busy loops keep the CPUs busy; stops at the first failure. A developer's
## check before stopping, not run in CI. STRESS_PKGS=./launcher STRESS_RUNS=20
## runs one package's tests 20 times.
stress: examples
	@set -e; pids=""; \
	trap 'for p in $$pids; do kill $$p 2>/dev/null || true; done; wait' EXIT; \
	trap 'exit 130' INT TERM; \
	for i in $$(seq $(STRESS_LOAD)); do yes >/dev/null & pids="$$pids $$!"; done; \
	echo "== $(STRESS_LOAD) busy loops:$$pids"; \
	begin=$$(date +%s); \
	for run in $$(seq $(STRESS_RUNS)); do \
	  start=$$(date +%s); \
	  $(GO) test -race -count=1 -timeout 20m $(STRESS_PKGS); \
	  echo "== run $$run of $(STRESS_RUNS) passed in $$(( $$(date +%s) - start ))s"; \
	done; \
	echo "== $(STRESS_RUNS) runs in a row passed in $$(( $$(date +%s) - begin ))s"

clean:
	rm -rf $(BIN) $(TSVM)/node_modules $(TSVM)/dist $(XSVM)/xsvm
