package aggregate_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/cairn-es/cairn/aggregate"
	"github.com/cairn-es/cairn/eventstore"
	"github.com/cairn-es/cairn/eventstore/postgres"
	"github.com/cairn-es/cairn/internal/pgtest"
)

type counterIncremented struct {
	By int `json:"by"`
}

type counter struct {
	aggregate.Base
	Total int `json:"total"`
}

func (c *counter) Apply(e any) {
	if inc, ok := e.(counterIncremented); ok {
		c.Total += inc.By
	}
}

// BenchmarkLoad1000 loads an aggregate of 1,000 events from PostgreSQL by
// replaying the stream and from a snapshot, against a raw pgx SELECT of the
// same 1,000 rows (decoded into plain structs) in the same run.
func BenchmarkLoad1000(b *testing.B) {
	const n = 1000
	ctx := context.Background()
	pool := pgtest.Pool(b, 4)
	schema := pgtest.Schema(b, pool)
	store, err := postgres.New(pool, postgres.Config{Schema: schema})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(store.Close)
	reg := eventstore.NewRegistry()
	eventstore.MustRegister[counterIncremented](reg, "CounterIncremented")
	newCounter := func() *counter { return &counter{} }
	plain := aggregate.NewRepository(store, reg, "counter", newCounter, aggregate.Config{})
	snapshotting := aggregate.NewRepository(store, reg, "snapcounter", newCounter, aggregate.Config{Snapshots: store, SnapshotEvery: n, SnapshotSchemaVersion: 1})
	for _, repo := range []*aggregate.Repository[*counter]{plain, snapshotting} {
		c := repo.New("1")
		for range n {
			aggregate.Record(c, counterIncremented{By: 1})
		}
		if _, err := repo.Save(ctx, c); err != nil {
			b.Fatal(err)
		}
	}
	if _, ok, _ := store.LoadSnapshot(ctx, "snapcounter-1"); !ok {
		b.Fatal("no snapshot was taken")
	}
	load := func(repo *aggregate.Repository[*counter]) func(b *testing.B) {
		return func(b *testing.B) {
			for b.Loop() {
				c, err := repo.Load(ctx, "1")
				if err != nil || c.Total != n {
					b.Fatalf("load: total %d, err %v", c.Total, err)
				}
			}
		}
	}
	b.Run("replay", load(plain))
	b.Run("snapshot", load(snapshotting))
	b.Run("raw-select", func(b *testing.B) {
		sql := fmt.Sprintf("SELECT version, type, data FROM %s.events WHERE stream_id = $1 ORDER BY version", schema)
		for b.Loop() {
			rows, err := pool.Query(ctx, sql, "counter-1")
			if err != nil {
				b.Fatal(err)
			}
			total := 0
			for rows.Next() {
				var v int64
				var typ string
				var data []byte
				var e counterIncremented
				if err := rows.Scan(&v, &typ, &data); err != nil {
					b.Fatal(err)
				}
				if err := json.Unmarshal(data, &e); err != nil {
					b.Fatal(err)
				}
				total += e.By
			}
			if rows.Err() != nil || total != n {
				b.Fatalf("raw: total %d, err %v", total, rows.Err())
			}
		}
	})
}
