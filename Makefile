# Cairn's developer commands. `make test` is the one CI runs.
SHELL       := /bin/bash
.SHELLFLAGS := -o pipefail -c
GO          ?= go
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
BENCHSTAT   := golang.org/x/perf/cmd/benchstat@v0.0.0-20260908200009-22c9c6c9d4da
WITH_PG     := scripts/with-postgres.sh
BENCH_COUNT ?= 5
PROJECTION_BENCH_COUNT ?= 3

.PHONY: demo test test-kurrentdb lint bench build

## demo: the sample order system on 127.0.0.1:8080, driven by a few hundred
## orders, with a summary; it serves on until Ctrl-C (ARGS=--exit returns).
demo:
	$(GO) build -o bin/orders ./examples/orders/cmd/orders
	$(WITH_PG) bin/orders demo $(ARGS)

build:
	$(GO) build ./...

## test: every test, with the race detector, against a real PostgreSQL
## (DATABASE_URL, else 127.0.0.1:5432, else a private throwaway server) and a
## real NATS server with JetStream (NATS_URL, else 127.0.0.1:4222, else a
## private throwaway nats-server).
test:
	$(WITH_PG) scripts/with-nats.sh $(GO) test -race -count=1 -timeout 12m ./...

## test-kurrentdb: the KurrentDB store's tests, and the projection, saga,
## app and sample tests that keep the log in KurrentDB, against the real
## server KURRENTDB_URL names (kurrentdb://127.0.0.1:2113?tls=false, say;
## README.md says how to start one). Without it the same tests run in
## `make test` against the in-process stand-in. One package at a time: the
## sample's tests count what lands in the server's log.
test-kurrentdb:
	@if [ -z "$$KURRENTDB_URL" ]; then \
		echo "test-kurrentdb needs KURRENTDB_URL, a KurrentDB connection string such as kurrentdb://127.0.0.1:2113?tls=false (see README.md, \"The event log in KurrentDB\")" >&2; \
		exit 2; \
	fi
	$(WITH_PG) $(GO) test -race -count=1 -p 1 -timeout 20m ./eventstore/kurrentdb/...
	$(WITH_PG) $(GO) test -race -count=1 -p 1 -timeout 20m -run 'KurrentDB' ./app/ ./projection/ ./saga/ ./examples/orders/
	$(WITH_PG) $(GO) test -race -count=1 -p 1 -timeout 20m -run 'KurrentDB|Store' ./examples/orders/cmd/orders/

## lint: formatting, go vet, staticcheck and a tidy go.mod/go.sum.
lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...
	$(GO) mod tidy -diff

## bench: the benchmarks behind docs/benchmarks.md. The projection
## benchmarks rebuild 1,000,000 events per run and the sample system's push
## hundreds of orders through it, so they run once per count; so do the
## integration ones (5,000 messages published, 5,000 paced from service to
## service over NATS JetStream: NATS_URL, else 127.0.0.1:4222, else a private
## nats-server). Packages run one at a time (-p 1): two benchmark binaries
## at once on a 2-core machine measure each other.
bench:
	$(WITH_PG) $(GO) test -p 1 -run '^$$' -bench . -benchmem -count $(BENCH_COUNT) \
		./eventstore/... ./aggregate/... ./command/... ./server/... | tee bench.out
	$(WITH_PG) $(GO) test -p 1 -run '^$$' -bench . -benchtime 1x -count $(PROJECTION_BENCH_COUNT) -timeout 60m \
		./projection/ ./examples/orders/ | tee -a bench.out
	$(WITH_PG) scripts/with-nats.sh $(GO) test -run '^$$' -bench . -benchtime 1x -count $(PROJECTION_BENCH_COUNT) -timeout 30m \
		./integration/jetstream/ | tee -a bench.out
	$(GO) run $(BENCHSTAT) bench.out
	$(GO) run ./internal/benchratio bench.out
