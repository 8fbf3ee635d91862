package projection_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/cairn-es/cairn/eventstore"
	"github.com/cairn-es/cairn/eventstore/postgres"
	"github.com/cairn-es/cairn/internal/pgtest"
	"github.com/cairn-es/cairn/projection"
)

var quietLog = slog.New(slog.NewTextHandler(io.Discard, nil))

// totals is a test read model: one row per stream with the sum of its
// events' amounts (times scale, 1 when zero: a "v2 logic" knob) and a count.
// fail is set before the projector is registered and never changed after
// (runners call it concurrently); hooks that change behaviour mid-test read
// atomics.
type totals struct {
	name    string
	version int
	scale   int64
	fail    func(e eventstore.RecordedEvent) error // optional: inject failures
}

func (p *totals) Name() string         { return p.name }
func (p *totals) Version() int         { return p.version }
func (p *totals) EventTypes() []string { return []string{"Added"} }
func (p *totals) Setup(ctx context.Context, tx pgx.Tx) error {
	_, err := tx.Exec(ctx, `CREATE TABLE totals (stream_id text PRIMARY KEY, total bigint NOT NULL, events int NOT NULL)`)
	return err
}
func (p *totals) Apply(ctx context.Context, tx pgx.Tx, e eventstore.RecordedEvent) error {
	if p.fail != nil {
		if err := p.fail(e); err != nil {
			return err
		}
	}
	var d struct{ Amount int64 }
	if err := json.Unmarshal(e.Data, &d); err != nil {
		return err
	}
	if p.scale != 0 {
		d.Amount *= p.scale
	}
	_, err := tx.Exec(ctx, `INSERT INTO totals (stream_id, total, events) VALUES ($1, $2, 1)
		ON CONFLICT (stream_id) DO UPDATE SET total = totals.total + excluded.total, events = totals.events + 1`, e.StreamID, d.Amount)
	return err
}

type env struct {
	store *postgres.Store
	mgr   *projection.Manager
}

func newEnv(t *testing.T, cfg projection.Config) env {
	t.Helper()
	pool := pgtest.Pool(t, 20)
	store, err := postgres.New(pool, postgres.Config{Schema: pgtest.Schema(t, pool), Logger: quietLog})
	require.NoError(t, err)
	t.Cleanup(store.Close)
	if cfg.Logger == nil {
		cfg.Logger = quietLog
	}
	mgr := pgtest.Manager(t, store, cfg)
	t.Cleanup(mgr.Close)
	pgtest.DropStoreModels(t, pool, store.Schema())
	return env{store: store, mgr: mgr}
}

func added(amount int) eventstore.Event {
	return eventstore.Event{Type: "Added", Data: []byte(fmt.Sprintf(`{"amount":%d}`, amount))}
}

// uniqueName gives each test's projection a schema name of its own.
func uniqueName(t *testing.T, base string) string {
	return fmt.Sprintf("%s_%x", base, pgtest.Suffix())
}

func modelRows(t *testing.T, store *postgres.Store, schema string) map[string][2]int64 {
	t.Helper()
	return totalsOf(t, store.Pool(), schema)
}
