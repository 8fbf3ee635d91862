package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/cairn-es/cairn/app"
	"github.com/cairn-es/cairn/cli"
	"github.com/cairn-es/cairn/eventstore"
	"github.com/cairn-es/cairn/eventstore/postgres"
	"github.com/cairn-es/cairn/internal/pgtest"
	"github.com/cairn-es/cairn/projection"
)

// tally is the test read model: per stream, the sum of the Added events'
// amounts and their count. While poisoned, it fails on events whose data
// has "poison": true.
type tally struct {
	name     string
	poisoned atomic.Bool
}

func (p *tally) Name() string         { return p.name }
func (p *tally) Version() int         { return 1 }
func (p *tally) EventTypes() []string { return []string{"Added"} }
func (p *tally) Setup(ctx context.Context, tx pgx.Tx) error {
	_, err := tx.Exec(ctx, `CREATE TABLE tally (stream_id text PRIMARY KEY, total bigint NOT NULL, events int NOT NULL)`)
	return err
}
func (p *tally) Apply(ctx context.Context, tx pgx.Tx, e eventstore.RecordedEvent) error {
	var d struct {
		Amount int64
		Poison bool
	}
	if err := json.Unmarshal(e.Data, &d); err != nil {
		return err
	}
	if d.Poison && p.poisoned.Load() {
		return fmt.Errorf("poisoned event %s@%d", e.StreamID, e.Version)
	}
	_, err := tx.Exec(ctx, `INSERT INTO tally (stream_id, total, events) VALUES ($1, $2, 1)
		ON CONFLICT (stream_id) DO UPDATE SET total = tally.total + excluded.total, events = tally.events + 1`, e.StreamID, d.Amount)
	return err
}

func added(amount int) eventstore.Event {
	return eventstore.Event{Type: "Added", Data: fmt.Appendf(nil, `{"amount":%d}`, amount)}
}

// harness is a migrated schema, a store on it for arranging events, and
// the command line's configuration with the test's projectors.
type harness struct {
	t      *testing.T
	pool   *pgxpool.Pool
	schema string
	store  *postgres.Store
	cfg    cli.Config
}

func newHarness(t *testing.T, projectors ...projection.Projector) *harness {
	t.Helper()
	pool := pgtest.Pool(t, 10)
	schema := pgtest.Schema(t, pool)
	store, err := postgres.New(pool, postgres.Config{Schema: schema})
	require.NoError(t, err)
	t.Cleanup(store.Close)
	for _, p := range projectors {
		pgtest.DropModels(t, pool, p.Name())
	}
	return &harness{t: t, pool: pool, schema: schema, store: store, cfg: cli.Config{
		Name:       "app",
		OpenLog:    app.OpenPostgresLog,
		Migrations: app.Migrations(),
		Setup: func(ctx context.Context, m *projection.Manager) error {
			for _, p := range projectors {
				if err := m.Register(p); err != nil {
					return err
				}
			}
			return nil
		},
	}}
}

func newTally(t *testing.T) *tally {
	return &tally{name: fmt.Sprintf("tally_%x", pgtest.Suffix())}
}

// syncBuffer is a bytes.Buffer safe for a command writing while the test
// reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// result of one command line run.
type result struct {
	out, err string
	e        error
}

// exec runs one command line in-process against the harness's schema,
// writing to the given buffers.
func (h *harness) exec(ctx context.Context, cfg cli.Config, out, errOut *syncBuffer, args ...string) error {
	root := cli.New(cfg)
	root.SetOut(out)
	root.SetErr(errOut)
	root.SetArgs(append([]string{"--database-url", pgtest.URL(), "--schema", h.schema}, args...))
	return root.ExecuteContext(ctx)
}

// run runs one command line to completion with the harness's config.
func (h *harness) run(args ...string) result {
	return h.runWith(h.cfg, args...)
}

func (h *harness) runWith(cfg cli.Config, args ...string) result {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var out, errOut syncBuffer
	err := h.exec(ctx, cfg, &out, &errOut, args...)
	return result{out: out.String(), err: errOut.String(), e: err}
}

// ok runs a command line that must succeed and returns its output.
func (h *harness) ok(args ...string) string {
	h.t.Helper()
	r := h.run(args...)
	require.NoError(h.t, r.e, "%s\nstderr:\n%s", strings.Join(args, " "), r.err)
	return r.out
}

// status is projection status NAME --json, decoded.
func (h *harness) status(name string) projection.Status {
	h.t.Helper()
	var st projection.Status
	require.NoError(h.t, json.Unmarshal([]byte(h.ok("projection", "status", name, "--json")), &st))
	return st
}

func (h *harness) append(stream string, events ...eventstore.Event) eventstore.AppendResult {
	h.t.Helper()
	res, err := h.store.Append(context.Background(), stream, eventstore.Any, events)
	require.NoError(h.t, err)
	return res
}

// readable waits until readers of the log can be given pos: an older
// transaction anywhere in the cluster (another test's) holds the read
// horizon back meanwhile.
func (h *harness) readable(pos eventstore.Position) {
	h.t.Helper()
	require.Eventually(h.t, func() bool {
		head, err := h.store.Head(context.Background())
		return err == nil && !head.Before(pos)
	}, 30*time.Second, 5*time.Millisecond, "position %s never became readable", pos)
}

func (h *harness) modelRows(name string) map[string][2]int64 {
	h.t.Helper()
	rows, err := h.pool.Query(context.Background(), "SELECT stream_id, total, events FROM "+pgx.Identifier{name, "tally"}.Sanitize())
	require.NoError(h.t, err)
	out := map[string][2]int64{}
	for rows.Next() {
		var id string
		var total, n int64
		require.NoError(h.t, rows.Scan(&id, &total, &n))
		out[id] = [2]int64{total, n}
	}
	require.NoError(h.t, rows.Err())
	return out
}
