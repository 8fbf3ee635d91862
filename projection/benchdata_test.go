package projection_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/cairn-es/cairn/eventstore"
	"github.com/cairn-es/cairn/eventstore/postgres"
)

// Shared pieces of the projection benchmarks (bench_test.go): the synthetic
// log, its seeding, and small statistics helpers. Nothing here runs unless a
// benchmark calls it.

var benchLog = slog.New(slog.NewTextHandler(io.Discard, nil))

// benchEnvInt reads a positive integer from the environment, or returns def.
func benchEnvInt(b *testing.B, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		b.Fatalf("%s=%q: want a positive integer", name, v)
	}
	return n
}

// benchLogShape describes the synthetic log: events spread round-robin over
// streams "item-<k>" (about ten per stream), each {"sku": ..., "qty": n}.
type benchLogShape struct {
	events  int
	streams int
	qty     int64 // sum of qty over all events, for correctness checks
}

func newBenchLogShape(events int) benchLogShape {
	s := benchLogShape{events: events, streams: max(1, events/10)}
	for i := range events {
		_, _, _, q := s.event(i)
		s.qty += q
	}
	return s
}

// event i of the log. Event i belongs to stream i mod streams, so a stream's
// events are spread over the whole log, as in a live system where streams
// interleave: a batch of the log touches about as many streams as it has
// events, and batching cannot win by folding one stream's events together.
func (s benchLogShape) event(i int) (stream string, version int64, sku string, qty int64) {
	k := i % s.streams
	return "item-" + strconv.Itoa(k), int64(i/s.streams) + 1, fmt.Sprintf("SKU-%04d", i%1000), int64(i%7) + 1
}

const benchMetadata = `{"correlation_id":"0197a1b2-0000-7000-8000-000000000001","causation_id":"0197a1b2-0000-7000-8000-000000000002"}`

// seedBenchLog writes the log straight into schema.events with COPY, in
// chunks of their own transactions, in order, so that log order agrees with
// stream order. tx and seq take their defaults. It then vacuums the table so
// that no timed reader pays for setting hint bits on fresh rows.
func seedBenchLog(b *testing.B, pool *pgxpool.Pool, schema string, shape benchLogShape) {
	b.Helper()
	ctx := context.Background()
	started := time.Now()
	const chunk = 100_000
	cols := []string{"event_id", "stream_id", "version", "type", "schema_version", "data", "metadata"}
	for from := 0; from < shape.events; from += chunk {
		to := min(from+chunk, shape.events)
		i := from
		src := pgx.CopyFromFunc(func() ([]any, error) {
			if i == to {
				return nil, nil
			}
			stream, version, sku, qty := shape.event(i)
			i++
			id := [16]byte(uuid.New())
			data := `{"sku":"` + sku + `","qty":` + strconv.FormatInt(qty, 10) + `}`
			return []any{id, stream, version, "ItemAdded", int32(1), data, benchMetadata}, nil
		})
		n, err := pool.CopyFrom(ctx, pgx.Identifier{schema, "events"}, cols, src)
		if err != nil {
			b.Fatalf("seeding the log: %v", err)
		}
		if n != int64(to-from) {
			b.Fatalf("seeding the log: copied %d rows, want %d", n, to-from)
		}
	}
	if _, err := pool.Exec(ctx, "VACUUM (ANALYZE) "+pgx.Identifier{schema, "events"}.Sanitize()); err != nil {
		b.Fatalf("vacuuming the seeded log: %v", err)
	}
	b.Logf("seeded %d events over %d streams in %v", shape.events, shape.streams, time.Since(started).Round(time.Millisecond))
}

// waitReadable waits until the whole seeded log is readable: a log read
// stops at the oldest transaction in flight anywhere in the cluster, so a
// long transaction of someone else's (another test binary on the same
// server) can hide freshly seeded events, and a rebuild would then replay
// a prefix of the log. Once readable, events stay readable.
func waitReadable(b *testing.B, store *postgres.Store, events int) {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	started := time.Now()
	for {
		n, err := store.CountLog(ctx, eventstore.Start, eventstore.ReadLogOptions{})
		if err != nil {
			b.Fatalf("waiting for the seeded log to become readable: %v", err)
		}
		if n == int64(events) {
			break
		}
		if n > int64(events) {
			b.Fatalf("the log holds %d events, want %d", n, events)
		}
		select {
		case <-ctx.Done():
			b.Fatalf("only %d of %d seeded events became readable: a transaction elsewhere in the cluster holds the read horizon back", n, events)
		case <-time.After(100 * time.Millisecond):
		}
	}
	if waited := time.Since(started); waited > time.Second {
		b.Logf("waited %v for the read horizon to pass the seeded log", waited.Round(time.Millisecond))
	}
}
