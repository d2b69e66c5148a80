# vmre — see README.md. Every target runs from a fresh clone: tools are
# built through `go tool` from tools/go.mod on first use.

GO       ?= go
BUF      := $(GO) tool -modfile=tools/go.mod buf
STATICCHECK := $(GO) tool -modfile=tools/go.mod staticcheck
BIN      := bin
PKGS     := ./...
BENCHTIME ?= 20x
BENCHCOUNT ?= 6
FUZZTIME ?= 30s
STRESS_RUNS ?= 5
STRESS_PKGS ?= $(PKGS)
STRESS_LOAD ?= $(shell getconf _NPROCESSORS_ONLN 2>/dev/null || echo 2)

.PHONY: all generate lint check-generated test build run bench fuzz soak stress clean

all: build

## generate: rewrite gen/ from proto/ with buf
generate:
	$(BUF) generate

## lint: buf lint, buf format, gofmt, go vet and staticcheck
lint:
	$(BUF) lint
	$(BUF) format --diff --exit-code
	@out=$$(gofmt -l $$(git ls-files '*.go' | grep -v '^gen/')); \
	  if [ -n "$$out" ]; then echo "gofmt would change: $$out"; exit 1; fi
	$(GO) vet $(PKGS)
	$(STATICCHECK) $(PKGS)

## check-generated: fail when gen/ differs from what proto/ generates
check-generated: generate
	@if [ -n "$$(git status --porcelain -- gen/)" ]; then \
	  git status --short -- gen/; git diff --stat -- gen/; \
	  echo "gen/ is stale: run 'make generate' and commit gen/"; exit 1; fi

## test: lint, check gen/ is fresh, run every test with the race detector
test: lint check-generated
	$(GO) test -race -count=1 -timeout 8m $(PKGS)

## build: build the vmre CLI and the example VM into bin/
build:
	$(GO) build -o $(BIN)/vmre ./cmd/vmre
	$(GO) build -o $(BIN)/examplevm ./cmd/examplevm

## run: build, then launch the example VM under vmre (Ctrl-C stops both)
run: build
	$(BIN)/vmre run --listen 127.0.0.1:8080 $(BIN)/examplevm

## bench: the benchmarks of docs/PERFORMANCE.md
bench:
	$(GO) test -run '^$$' -bench . -benchtime $(BENCHTIME) -count $(BENCHCOUNT) ./bench/

## fuzz: run each fuzz target for FUZZTIME
fuzz:
	@set -e; for pkg in $$($(GO) list $(PKGS)); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
	    echo "== $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f\$$" -fuzztime $(FUZZTIME) $$pkg; \
	  done; done

## soak: 1000 launch/stop cycles, checking for leaks
soak:
	VMRE_SOAK=1000 $(GO) test -run '^TestSoak$$' -count=1 -timeout 30m -v ./launcher/

## stress: every test with -race, STRESS_RUNS times in a row, while STRESS_LOAD
## busy loops keep the CPUs busy; stops at the first failure. A developer's
## check before stopping, not run in CI. STRESS_PKGS=./launcher STRESS_RUNS=20
## runs one package's tests 20 times.
stress:
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
	rm -rf $(BIN)
