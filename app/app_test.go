package app_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/cairn-es/cairn/app"
	"github.com/cairn-es/cairn/command"
	"github.com/cairn-es/cairn/eventstore"
	"github.com/cairn-es/cairn/internal/pgtest"
	"github.com/cairn-es/cairn/projection"
	"github.com/cairn-es/cairn/query"
	"github.com/cairn-es/cairn/saga"
	"github.com/cairn-es/cairn/server"
)

var quietLog = slog.New(slog.NewTextHandler(io.Discard, nil))

type (
	Ping struct {
		ID string `json:"id" param:"id"`
	}
	Pinged struct {
		ID string `json:"id"`
	}
	GetPings struct {
		ID string `param:"id"`
	}
)

// pings is a tiny bounded context: POST /pings/:id records Pinged, a
// projection counts them, GET /pings/:id answers the count.
type pings struct{ model string }

func (pings) Name() string { return "pings" }

func (pings) RegisterEvents(r *eventstore.Registry) error {
	return eventstore.Register[Pinged](r, "Pinged")
}

func (m pings) RegisterCommands(c *app.Commands) error {
	return command.Register(c.Dispatcher, func(ctx context.Context, cmd Ping) (eventstore.AppendResult, error) {
		ev, err := c.Registry.Encode(Pinged(cmd))
		if err != nil {
			return eventstore.AppendResult{}, err
		}
		cause, _ := eventstore.CausationFrom(ctx)
		evs := []eventstore.Event{ev}
		return c.Store.Append(ctx, "ping-"+cmd.ID, eventstore.Any, evs, cause.Stamp(evs)...)
	})
}

func (m pings) RegisterReadModels(r *app.ReadModels) error {
	h := projection.NewHandlers(r.Registry)
	projection.On(h, func(ctx context.Context, tx pgx.Tx, e Pinged, _ eventstore.RecordedEvent) error {
		_, err := tx.Exec(ctx, `INSERT INTO pings (id, n) VALUES ($1, 1) ON CONFLICT (id) DO UPDATE SET n = pings.n + 1`, e.ID)
		return err
	})
	return r.Projections.Register(&pingModel{Handlers: h, name: m.model})
}

func (m pings) RegisterAPI(a *app.API) error {
	return errors.Join(
		query.Register(a.Queries, query.HandlerFunc[GetPings, int](func(ctx context.Context, q GetPings) (int, error) {
			var n int
			err := a.DB.Pool.QueryRow(ctx, `SELECT n FROM `+pgx.Identifier{m.model, "pings"}.Sanitize()+` WHERE id = $1`, q.ID).Scan(&n)
			if errors.Is(err, pgx.ErrNoRows) {
				return 0, query.NotFound("ping", q.ID)
			}
			return n, err
		}), query.ReadsFrom(m.model)),
		server.Command[Ping](a.Server, "/pings/:id"),
		server.Query[GetPings, int](a.Server, "/pings/:id"),
	)
}

type pingModel struct {
	*projection.Handlers
	name string
}

func (p *pingModel) Name() string { return p.name }
func (p *pingModel) Version() int { return 1 }
func (p *pingModel) Setup(ctx context.Context, tx pgx.Tx) error {
	_, err := tx.Exec(ctx, `CREATE TABLE pings (id text PRIMARY KEY, n int NOT NULL)`)
	return err
}

type failing struct{}

func (failing) Name() string                              { return "broken" }
func (failing) RegisterEvents(*eventstore.Registry) error { return nil }
func (failing) RegisterCommands(*app.Commands) error      { return errors.New("no luck") }

func TestAppAssemblesModulesAndRunsThem(t *testing.T) {
	pool := pgtest.Pool(t, 20)
	schema := pgtest.Schema(t, pool)
	model := fmt.Sprintf("pings_%x", pgtest.Suffix())
	pgtest.DropModels(t, pool, model)
	ctx := context.Background()
	a, err := app.New(ctx, app.Config{Pool: pool, Schema: schema, Logger: quietLog}, pings{model: model})
	require.NoError(t, err)
	defer a.Close()

	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- a.RunWith(runCtx, app.RunOptions{NoServer: true}) }()
	ts := httptest.NewServer(a.Deps().Server)
	defer ts.Close()

	resp, err := http.Post(ts.URL+"/pings/p-1", "application/json", strings.NewReader(`{}`))
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusAccepted, resp.StatusCode)
	pos := resp.Header.Get(server.HeaderPosition)
	require.NotEmpty(t, pos)

	req, _ := http.NewRequest(http.MethodGet, ts.URL+"/pings/p-1", nil)
	req.Header.Set(server.HeaderMinPosition, pos)
	resp, err = http.DefaultClient.Do(req)
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode, string(body))
	require.Equal(t, "1", strings.TrimSpace(string(body)))

	// One registry holds every subsystem's metrics, and the server
	// serves it.
	resp, err = http.Get(ts.URL + "/metrics")
	require.NoError(t, err)
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		command.MetricHandled + `{command="Ping",outcome="ok"} 1`,
		command.MetricEventsAppended + `{command="Ping"} 1`,
		projection.MetricStatusUp + " 1",
		projection.MetricState + `{projection="` + model + `",state="running"} 1`,
		saga.MetricRefused + " 0",
		server.MetricHTTPRequestDuration + `_count{method="POST",route="/pings/:id",status="202"} 1`,
		"go_goroutines",
	} {
		require.Contains(t, string(body), want)
	}

	stop()
	select {
	case err := <-done:
		require.NoError(t, err, "a stop is not a failure")
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
}

func TestAppNamesTheModuleThatFailedToRegister(t *testing.T) {
	pool := pgtest.Pool(t, 5)
	_, err := app.New(context.Background(), app.Config{Pool: pool, Schema: pgtest.Schema(t, pool), Logger: quietLog}, failing{})
	require.ErrorContains(t, err, "module broken: registering commands: no luck")
}

func TestCLIRegistersTheModulesProjections(t *testing.T) {
	pool := pgtest.Pool(t, 5)
	schema := pgtest.Schema(t, pool)
	a, err := app.New(context.Background(), app.Config{Pool: pool, Schema: schema, Logger: quietLog})
	require.NoError(t, err)
	defer a.Close()
	cfg := app.CLI("pinger", []app.Module{pings{model: "pings_cli"}})
	require.Equal(t, "pinger", cfg.Name)
	m, err := projection.NewManager(a.Deps().Store, a.Deps().DB, projection.Config{Logger: quietLog})
	require.NoError(t, err)
	defer m.Close()
	require.NoError(t, cfg.Setup(context.Background(), m))
	require.Equal(t, []string{"pings_cli"}, m.Names())
}
