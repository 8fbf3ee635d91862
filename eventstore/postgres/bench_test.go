package postgres_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/cairn-es/cairn/eventstore"
	"github.com/cairn-es/cairn/eventstore/postgres"
	"github.com/cairn-es/cairn/internal/pgtest"
)

// The benchmarks pair every Cairn operation with a baseline doing the same
// database work by hand in the same run (a raw pgx INSERT or COPY of the same
// rows into a copy of the events table, indexes included), so
// docs/benchmarks.md can report ratios that survive a noisy machine.

var (
	benchData = json.RawMessage(`{"order_id":"order-42","sku":"SKU-1234","quantity":3,"unit_price_cents":1299}`)
	benchMeta = eventstore.Metadata{CorrelationID: "0197a1b2-0000-7000-8000-000000000001", CausationID: "0197a1b2-0000-7000-8000-000000000002"}
)

type benchEnv struct {
	pool   *pgxpool.Pool
	schema string
	store  *postgres.Store
}

func newBenchEnv(b *testing.B) benchEnv {
	pool := pgtest.Pool(b, 40)
	schema := pgtest.Schema(b, pool)
	store, err := postgres.New(pool, postgres.Config{Schema: schema})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(store.Close)
	if _, err := pool.Exec(context.Background(), fmt.Sprintf("CREATE TABLE %s.raw_events (LIKE %[1]s.events INCLUDING ALL)", schema)); err != nil {
		b.Fatal(err)
	}
	return benchEnv{pool: pool, schema: schema, store: store}
}

// runWriters splits b.N operations over n goroutines; op gets the writer's
// index and its own operation count so far.
func runWriters(b *testing.B, n int, op func(w, i int) error) {
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, n)
	b.ResetTimer()
	for w := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; next.Add(1) <= int64(b.N); i++ {
				if err := op(w, i); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
}

func BenchmarkSingleAppend(b *testing.B) {
	for _, writers := range []int{1, 4, 16} {
		b.Run(fmt.Sprintf("store/writers=%d", writers), func(b *testing.B) {
			env := newBenchEnv(b)
			ctx := context.Background()
			run := uuid.NewString()[:8]
			runWriters(b, writers, func(w, i int) error {
				_, err := env.store.Append(ctx, fmt.Sprintf("bench-%s%d", run, w), eventstore.Exact(int64(i)),
					[]eventstore.Event{{Type: "ItemAdded", Data: benchData, Metadata: benchMeta}})
				return err
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
		})
		b.Run(fmt.Sprintf("raw-insert/writers=%d", writers), func(b *testing.B) {
			env := newBenchEnv(b)
			ctx := context.Background()
			meta, _ := json.Marshal(benchMeta)
			sql := fmt.Sprintf(`INSERT INTO %s.raw_events (event_id, stream_id, version, type, schema_version, data, metadata)
				VALUES ($1, $2, $3, $4, $5, $6, $7)`, env.schema)
			runWriters(b, writers, func(w, i int) error {
				id, _ := uuid.NewV7()
				_, err := env.pool.Exec(ctx, sql, id, fmt.Sprintf("bench-%d", w), i+1, "ItemAdded", 1, string(benchData), string(meta))
				return err
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
		})
	}
}

func BenchmarkBatchAppend100(b *testing.B) {
	const size = 100
	b.Run("store", func(b *testing.B) {
		env := newBenchEnv(b)
		ctx := context.Background()
		events := make([]eventstore.Event, size)
		for i := range events {
			events[i] = eventstore.Event{Type: "ItemAdded", Data: benchData, Metadata: benchMeta}
		}
		b.ResetTimer()
		for i := range b.N {
			if _, err := env.store.Append(ctx, "batch-1", eventstore.Exact(int64(i*size)), events); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N*size)/b.Elapsed().Seconds(), "events/s")
	})
	b.Run("copy", func(b *testing.B) {
		env := newBenchEnv(b)
		ctx := context.Background()
		meta, _ := json.Marshal(benchMeta)
		cols := []string{"event_id", "stream_id", "version", "type", "schema_version", "data", "metadata"}
		rows := make([][]any, size)
		b.ResetTimer()
		for i := range b.N {
			for j := range rows {
				id, _ := uuid.NewV7()
				rows[j] = []any{id, "batch-1", int64(i*size + j + 1), "ItemAdded", int32(1), string(benchData), string(meta)}
			}
			if _, err := env.pool.CopyFrom(ctx, pgx.Identifier{env.schema, "raw_events"}, cols, pgx.CopyFromRows(rows)); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N*size)/b.Elapsed().Seconds(), "events/s")
	})
}
