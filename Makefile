# PortSentry pipeline: build, test, benchmark, fuzz.
GO       ?= go
PROGRAMS := ps-listen ps-sniff ps-judge ps-block
BINS     := $(PROGRAMS:%=bin/%)
STATICCHECK_VERSION := v0.8.2
# Seconds each fuzz target runs in `make test` (short) and `make fuzz`.
FUZZTIME_SHORT ?= 3s
FUZZTIME       ?= 60s

export CGO_ENABLED := 0

.PHONY: all build deps test unit lint fuzz fuzz-short bench replay demo clean gocheck

all: build

build: $(BINS) bin/hitgen

# The version every program prints (--version, its first log line).
VERSION ?= $(shell git describe --always --dirty --tags 2>/dev/null || echo unknown)

bin/%: FORCE gocheck
	$(GO) build -trimpath -ldflags "-X github.com/portsentry/pipeline/shared/stage.version=$(VERSION)" -o $@ ./$*

bin/hitgen: FORCE
	$(GO) build -o $@ ./tests/hitgen

FORCE:

# go.mod asks for Go 1.26, which any Go from 1.21 on downloads by itself
# (GOTOOLCHAIN=auto); Debian 12's golang-go (1.19) cannot: say so plainly
# instead of its error about go.mod.
gocheck:
	@v=$$($(GO) env GOVERSION 2>/dev/null) || { echo "make: no Go ($(GO)): README.md, Quick start, says how to get it" >&2; exit 1; }; \
	v=$${v#go}; if [ "$$(printf '%s\n' 1.21 "$$v" | sort -V | head -n 1)" != 1.21 ]; then \
	  echo "make: Go $$v is too old: this project needs Go 1.26 (go.mod), which Go 1.21 or later fetches by itself; README.md, Quick start, says how to get it" >&2; exit 1; fi

# The whole suite: lint, unit and kernel tests, end-to-end lab tests, and a
# few seconds of every fuzz target. Root and network namespaces are needed for
# the lab tests; with CI=true a test that cannot run them fails.
test: deps build lint unit fuzz-short

# The lab's real peers (nmap, hping3, nftables, fail2ban, ...) from Debian's
# packages, installed only where missing.
deps:
	@tests/install-deps.sh

# go test shows a skip's reason only with -v: say it here, loudly.
unit:
	@if [ "$$(id -u)" != 0 ]; then echo "*** make unit: not root, so the kernel and lab tests (network namespaces, nftables, packet sockets, real scanners) SKIP; run it as root ***"; fi
	$(GO) test -count=1 -timeout 14m ./...

lint: bin/staticcheck
	@echo "== gofmt, go vet, staticcheck"
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change: $$out"; exit 1; fi
	$(GO) vet ./...
	bin/staticcheck ./...

bin/staticcheck:
	GOBIN=$(CURDIR)/bin $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

fuzz-short:
	@FUZZTIME=$(FUZZTIME_SHORT) tests/fuzz-all.sh

fuzz:
	@FUZZTIME=$(FUZZTIME) tests/fuzz-all.sh

# Throughput, memory and lab figures; long, and prints what it is doing.
bench: build
	@tests/bench.sh

# Sets up a two-namespace lab, scans it with and without the pipeline, and
# prints what the scanner saw side by side; then tears the lab down.
demo: build
	@tests/demo.sh

# Replays a captured hit log through ps-judge and ps-block --dry-run with the
# built-in defaults: the decisions and what would be done, changing nothing.
replay: bin/ps-judge bin/ps-block
	bin/ps-judge -c /dev/null < contrib/sample-hits.jsonl | bin/ps-block -c /dev/null --dry-run

clean:
	rm -rf bin
