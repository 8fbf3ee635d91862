package command_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"testing"

	"github.com/google/uuid"

	"github.com/cairn-es/cairn/aggregate"
	"github.com/cairn-es/cairn/command"
	"github.com/cairn-es/cairn/eventstore"
	"github.com/cairn-es/cairn/eventstore/memory"
	"github.com/cairn-es/cairn/eventstore/postgres"
	"github.com/cairn-es/cairn/internal/pgtest"
)

type OpenTab struct {
	TabID string `json:"tab_id"`
	Table int    `json:"table"`
}

// OpenTabLookingUp is OpenTab under a handler that is not AppendOnly.
type OpenTabLookingUp OpenTab

type TabOpened struct {
	Table int `json:"table"`
}

type tab struct {
	aggregate.Base
	Open bool `json:"open"`
}

func (t *tab) Apply(e any) {
	if _, ok := e.(TabOpened); ok {
		t.Open = true
	}
}

// BenchmarkDispatch measures a command end to end (dispatch, middleware,
// aggregate load of a new stream, append with the command record) against
// a raw pgx INSERT of one event row in the same run: "dispatch" under an
// AppendOnly handler, "dispatch-lookup-first" under one that is not, whose
// command the dispatcher looks up in the command log first.
func BenchmarkDispatch(b *testing.B) {
	ctx := context.Background()
	pool := pgtest.Pool(b, 4)
	schema := pgtest.Schema(b, pool)
	store, err := postgres.New(pool, postgres.Config{Schema: schema})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(store.Close)
	reg := eventstore.NewRegistry()
	eventstore.MustRegister[TabOpened](reg, "TabOpened")
	tabs := aggregate.NewRepository(store, reg, "tab", func() *tab { return &tab{} }, aggregate.Config{})
	d := command.NewDispatcher(store, command.Config{Logger: slog.New(slog.DiscardHandler)})
	open := func(ctx context.Context, cmd OpenTab) (eventstore.AppendResult, error) {
		t, err := tabs.Load(ctx, cmd.TabID)
		if errors.Is(err, aggregate.ErrNotFound) {
			t, err = tabs.New(cmd.TabID), nil
		}
		if err != nil {
			return eventstore.AppendResult{}, err
		}
		aggregate.Record(t, TabOpened{Table: cmd.Table})
		return tabs.Save(ctx, t)
	}
	command.MustRegister(d, open, command.AppendOnly())
	command.MustRegister(d, func(ctx context.Context, cmd OpenTabLookingUp) (eventstore.AppendResult, error) {
		return open(ctx, OpenTab(cmd))
	})

	b.Run("dispatch", func(b *testing.B) {
		for b.Loop() {
			if _, err := d.Dispatch(ctx, OpenTab{TabID: uuid.NewString(), Table: 7}); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "commands/s")
	})
	b.Run("dispatch-lookup-first", func(b *testing.B) {
		for b.Loop() {
			if _, err := d.Dispatch(ctx, OpenTabLookingUp{TabID: uuid.NewString(), Table: 7}); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "commands/s")
	})
	b.Run("raw-insert", func(b *testing.B) {
		sql := fmt.Sprintf(`INSERT INTO %s.events (event_id, stream_id, version, type, schema_version, data, metadata)
			VALUES ($1, $2, 1, 'TabOpened', 1, $3, '{}')`, schema)
		data, _ := json.Marshal(TabOpened{Table: 7})
		for b.Loop() {
			id, _ := uuid.NewV7()
			if _, err := pool.Exec(ctx, sql, id, "raw-"+id.String(), string(data)); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
	})
}

// BenchmarkTracingOff measures what tracing costs when it is off (no SDK
// installed: the default): a command dispatched through the default chain,
// whose first middleware is Tracing with the global no-op provider, against
// the same chain without Tracing, in the same run. The store is the memory
// store, so that the middleware's share is not hidden behind a database
// round trip.
func BenchmarkTracingOff(b *testing.B) {
	ctx := context.Background()
	reg := eventstore.NewRegistry()
	eventstore.MustRegister[TabOpened](reg, "TabOpened")
	logger := slog.New(slog.DiscardHandler)
	for _, c := range []struct {
		name string
		cfg  command.Config
	}{
		{"traced-off", command.Config{Logger: logger}},
		{"untraced", command.Config{Chain: []command.Middleware{command.Logging(logger), command.Validation(), command.Retry(command.DefaultRetry)}}},
	} {
		b.Run(c.name, func(b *testing.B) {
			// A store of its own, so that neither side runs on a log the
			// other has grown.
			store := memory.New(memory.Config{})
			tabs := aggregate.NewRepository(store, reg, "tab", func() *tab { return &tab{} }, aggregate.Config{})
			d := command.NewDispatcher(store, c.cfg)
			command.MustRegister(d, func(ctx context.Context, cmd OpenTab) (eventstore.AppendResult, error) {
				t := tabs.New(cmd.TabID)
				aggregate.Record(t, TabOpened{Table: cmd.Table})
				return tabs.Save(ctx, t)
			}, command.AppendOnly())
			// The other side's garbage (its store) is collected before,
			// not during, this side's run.
			runtime.GC()
			for b.Loop() {
				if _, err := d.Dispatch(ctx, OpenTab{TabID: uuid.NewString(), Table: 7}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
