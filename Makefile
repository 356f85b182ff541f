# tollgate: make build | test | bench | bench-compare | lint | fuzz
GO      ?= go
PKGS    ?= ./...
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT  ?= $(shell git rev-parse --short HEAD 2>/dev/null)

.PHONY: build test bench bench-compare lint fuzz demo load

build:
	$(GO) build -ldflags "-X main.version=$(VERSION) -X main.commit=$(COMMIT)" -o bin/tollgate ./cmd/tollgate

# The whole suite, with the race detector. Starts its own redis-server and
# stripe-mock processes; see README "Running the tests".
test:
	$(GO) test -race -count=1 -timeout 15m $(PKGS)

bench:
	$(GO) test -run '^$$' -bench . -benchmem $(PKGS)

# Side by side with a bare Go proxy, nginx, HAProxy and Caddy on loopback
# (docs/performance.md). Installs its Debian packages if missing. Flags in
# ARGS, e.g. make bench-compare ARGS="-rounds 3 -d 10s".
bench-compare:
	scripts/bench-compare.sh $(ARGS)

lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt needed"; exit 1; }
	$(GO) vet $(PKGS)

# Each native fuzz target for FUZZTIME (their seed corpora run in every `make test`).
FUZZTIME ?= 30s
fuzz:
	$(GO) test ./proxy/ -run '^$$' -fuzz '^FuzzNormalizePath$$' -fuzztime $(FUZZTIME)
	$(GO) test ./proxy/ -run '^$$' -fuzz '^FuzzStripReserved$$' -fuzztime $(FUZZTIME)
	$(GO) test ./proxy/ -run '^$$' -fuzz '^FuzzForwardedPathIsMatchedPath$$' -fuzztime $(FUZZTIME)
	$(GO) test ./proxy/auth/ -run '^$$' -fuzz '^FuzzBearerToken$$' -fuzztime $(FUZZTIME)
	$(GO) test ./proxy/auth/ -run '^$$' -fuzz '^FuzzParseJWKS$$' -fuzztime $(FUZZTIME)
	$(GO) test ./webhook/ -run '^$$' -fuzz '^FuzzWebhook$$' -fuzztime $(FUZZTIME)
	$(GO) test ./config/ -run '^$$' -fuzz '^FuzzLoad$$' -fuzztime $(FUZZTIME)
	$(GO) test ./internal/logging/ -run '^$$' -fuzz '^FuzzRequestLine$$' -fuzztime $(FUZZTIME)

demo:
	$(GO) run ./cmd/tollgate demo

# Loopback load test of the demo with hey (bounded; see scripts/load.sh).
load:
	scripts/load.sh
