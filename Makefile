# Cairn's developer commands. `make test` is the one CI runs.
GO          ?= go
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
BENCHSTAT   := golang.org/x/perf/cmd/benchstat@v0.0.0-20260908200009-22c9c6c9d4da
WITH_PG     := scripts/with-postgres.sh
BENCH_COUNT ?= 5

.PHONY: test lint bench build

build:
	$(GO) build ./...

## test: every test, with the race detector, against a real PostgreSQL
## (DATABASE_URL, else 127.0.0.1:5432, else a private throwaway server).
test:
	$(WITH_PG) $(GO) test -race -count=1 -timeout 12m ./...

## lint: formatting, go vet and staticcheck.
lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...

## bench: the benchmarks behind docs/benchmarks.md.
bench:
	$(WITH_PG) $(GO) test -run '^$$' -bench . -benchmem -count $(BENCH_COUNT) ./... | tee bench.out
	$(GO) run $(BENCHSTAT) bench.out
	$(GO) run ./internal/benchratio bench.out
