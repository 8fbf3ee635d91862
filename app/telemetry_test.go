package app_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/cairn-es/cairn/app"
	"github.com/cairn-es/cairn/command"
	"github.com/cairn-es/cairn/eventstore"
	"github.com/cairn-es/cairn/eventstore/postgres"
	"github.com/cairn-es/cairn/internal/pgtest"
	"github.com/cairn-es/cairn/projection"
	"github.com/cairn-es/cairn/saga"
	"github.com/cairn-es/cairn/server"
	"github.com/cairn-es/cairn/telemetry"
)

// The traced flow: POST /traced/:id places an order (TraceOrderPlaced);
// a saga reserves its stock (ReserveTraceStock, which appends
// TraceStockReserved) and completes; a projection counts both events.
type (
	PlaceTraceOrder struct {
		ID string `json:"id" param:"id"`
	}
	ReserveTraceStock struct {
		ID string `json:"id"`
	}
	TraceOrderPlaced struct {
		ID string `json:"id"`
	}
	TraceStockReserved struct {
		ID string `json:"id"`
	}
)

type tracedFlow struct{ suffix string }

func (f tracedFlow) sagaName() string { return "trace_" + f.suffix }
func (f tracedFlow) model() string    { return "traced_" + f.suffix }

func (tracedFlow) Name() string { return "traced" }

func (tracedFlow) RegisterEvents(r *eventstore.Registry) error {
	return errors.Join(
		eventstore.Register[TraceOrderPlaced](r, "TraceOrderPlaced"),
		eventstore.Register[TraceStockReserved](r, "TraceStockReserved"),
	)
}

func (tracedFlow) RegisterCommands(c *app.Commands) error {
	appendOne := func(ctx context.Context, stream string, data any) (eventstore.AppendResult, error) {
		ev, err := c.Registry.Encode(data)
		if err != nil {
			return eventstore.AppendResult{}, err
		}
		cause, _ := eventstore.CausationFrom(ctx)
		evs := []eventstore.Event{ev}
		return c.Store.Append(ctx, stream, eventstore.Any, evs, cause.Stamp(evs)...)
	}
	return errors.Join(
		command.Register(c.Dispatcher, func(ctx context.Context, cmd PlaceTraceOrder) (eventstore.AppendResult, error) {
			return appendOne(ctx, "torder-"+cmd.ID, TraceOrderPlaced(cmd))
		}),
		command.Register(c.Dispatcher, func(ctx context.Context, cmd ReserveTraceStock) (eventstore.AppendResult, error) {
			return appendOne(ctx, "tstock-"+cmd.ID, TraceStockReserved(cmd))
		}),
	)
}

func (f tracedFlow) RegisterReadModels(r *app.ReadModels) error {
	h := projection.NewHandlers(r.Registry)
	count := func(ctx context.Context, tx pgx.Tx, id string) error {
		_, err := tx.Exec(ctx, `INSERT INTO counts (id, n) VALUES ($1, 1) ON CONFLICT (id) DO UPDATE SET n = counts.n + 1`, id)
		return err
	}
	projection.On(h, func(ctx context.Context, tx pgx.Tx, e TraceOrderPlaced, _ eventstore.RecordedEvent) error {
		return count(ctx, tx, e.ID)
	})
	projection.On(h, func(ctx context.Context, tx pgx.Tx, e TraceStockReserved, _ eventstore.RecordedEvent) error {
		return count(ctx, tx, e.ID)
	})
	return r.Projections.Register(&countModel{Handlers: h, name: f.model()})
}

type reservation struct{ Reserved bool }

func (f tracedFlow) RegisterProcesses(p *app.Processes) error {
	d := saga.New[reservation](f.sagaName(), p.Registry)
	saga.StartOn(d, func(e TraceOrderPlaced) string { return e.ID },
		func(c *saga.Context[reservation], e TraceOrderPlaced) error {
			c.Send(ReserveTraceStock(e))
			return nil
		})
	saga.On(d, func(e TraceStockReserved) string { return e.ID },
		func(c *saga.Context[reservation], _ TraceStockReserved) error {
			c.State.Reserved = true
			c.Complete("reserved")
			return nil
		})
	return p.Sagas.Register(d)
}

func (tracedFlow) RegisterAPI(a *app.API) error {
	return server.Command[PlaceTraceOrder](a.Server, "/traced/:id")
}

type countModel struct {
	*projection.Handlers
	name string
}

func (m *countModel) Name() string { return m.name }
func (m *countModel) Version() int { return 1 }
func (m *countModel) Setup(ctx context.Context, tx pgx.Tx) error {
	_, err := tx.Exec(ctx, `CREATE TABLE counts (id text PRIMARY KEY, n int NOT NULL)`)
	return err
}

// runTracedFlow runs an App of the traced flow with cfg (Pool, Schema and
// Logger filled in), posts one order with the header traceparent (when
// not empty), and waits for the saga to complete and the read model to
// count both events. It returns the App's pool, schema and flow; the App
// is closed when it returns.
func runTracedFlow(t *testing.T, cfg app.Config, traceparent string) (*pgxpool.Pool, string, tracedFlow) {
	t.Helper()
	pool := pgtest.Pool(t, 12)
	schema := pgtest.Schema(t, pool)
	flow := tracedFlow{suffix: fmt.Sprintf("%x", pgtest.Suffix())}
	pgtest.DropModels(t, pool, flow.model(), saga.ProjectionName(flow.sagaName()))
	cfg.Pool, cfg.Schema, cfg.Logger = pool, schema, quietLog
	ctx := context.Background()
	a, err := app.New(ctx, cfg, flow)
	require.NoError(t, err)
	defer a.Close()

	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- a.RunWith(runCtx, app.RunOptions{NoServer: true}) }()
	defer func() {
		stop()
		require.NoError(t, <-done)
	}()
	ts := httptest.NewServer(a.Deps().Server)
	defer ts.Close()

	req, err := http.NewRequest(http.MethodPost, ts.URL+"/traced/o-1", strings.NewReader(`{}`))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	if traceparent != "" {
		req.Header.Set("traceparent", traceparent)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusAccepted, resp.StatusCode)

	require.Eventually(t, func() bool {
		var n int
		err := pool.QueryRow(ctx, `SELECT n FROM `+pgx.Identifier{flow.model(), "counts"}.Sanitize()+` WHERE id = 'o-1'`).Scan(&n)
		if err != nil || n < 2 {
			return false
		}
		var status string
		err = pool.QueryRow(ctx, `SELECT status FROM `+pgx.Identifier{schema, "saga_instances"}.Sanitize()+
			` WHERE saga = $1 AND instance_id = 'o-1'`, flow.sagaName()).Scan(&status)
		return err == nil && status == saga.StatusCompleted
	}, 30*time.Second, 10*time.Millisecond, "the saga completes and the read model counts both events")
	return pool, schema, flow
}

// eventsOf returns the recorded events of stream.
func eventsOf(t *testing.T, pool *pgxpool.Pool, schema, stream string) []eventstore.RecordedEvent {
	t.Helper()
	store, err := postgres.New(pool, postgres.Config{Schema: schema, Logger: quietLog})
	require.NoError(t, err)
	defer store.Close()
	evs, err := store.ReadStream(context.Background(), stream, eventstore.ReadStreamOptions{})
	require.NoError(t, err)
	return evs
}

// spanNamed returns the one ended span called name.
func spanNamed(t *testing.T, spans []sdktrace.ReadOnlySpan, name string) sdktrace.ReadOnlySpan {
	t.Helper()
	var found []sdktrace.ReadOnlySpan
	for _, s := range spans {
		if s.Name() == name {
			found = append(found, s)
		}
	}
	require.Len(t, found, 1, "spans called %q", name)
	return found[0]
}

// spansNamed returns the ended spans called name.
func spansNamed(spans []sdktrace.ReadOnlySpan, name string) []sdktrace.ReadOnlySpan {
	var found []sdktrace.ReadOnlySpan
	for _, s := range spans {
		if s.Name() == name {
			found = append(found, s)
		}
	}
	return found
}

func requireChild(t *testing.T, child, parent sdktrace.ReadOnlySpan) {
	t.Helper()
	require.Equal(t, parent.SpanContext().SpanID(), child.Parent().SpanID(),
		"%q is a child of %q", child.Name(), parent.Name())
	require.Equal(t, parent.SpanContext().TraceID(), child.SpanContext().TraceID(), "%q is in %q's trace", child.Name(), parent.Name())
}

// parentOrLinked reports whether span is a child of target or links to it.
func parentOrLinked(span sdktrace.ReadOnlySpan, target trace.SpanContext) bool {
	if span.Parent().SpanID() == target.SpanID() {
		return true
	}
	for _, l := range span.Links() {
		if l.SpanContext.SpanID() == target.SpanID() {
			return true
		}
	}
	return false
}

func TestOneTraceFromTheRequestThroughTheSagaToTheReadModel(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	defer func() { _ = tp.Shutdown(context.Background()) }()
	const clientTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
	pool, schema, flow := runTracedFlow(t, app.Config{NoEnv: true, Tracing: app.TracingConfig{Provider: tp}},
		"00-"+clientTrace+"-00f067aa0ba902b7-01")

	model, sagaModel := "projection "+flow.model(), "projection "+saga.ProjectionName(flow.sagaName())
	var spans []sdktrace.ReadOnlySpan
	// Spans end after their transactions commit: wait for the last.
	require.Eventually(t, func() bool {
		spans = rec.Ended()
		return len(spansNamed(spans, "saga "+flow.sagaName()+" TraceStockReserved")) == 1 &&
			len(spansNamed(spans, "command ReserveTraceStock")) == 1 && len(spansNamed(spans, model)) > 0
	}, 10*time.Second, 10*time.Millisecond)

	// HTTP → command → (event) → projection batch and saga step.
	httpSpan := spanNamed(t, spans, "POST /traced/:id")
	require.Equal(t, clientTrace, httpSpan.SpanContext().TraceID().String(), "the client's trace goes on")
	place := spanNamed(t, spans, "command PlaceTraceOrder")
	requireChild(t, place, httpSpan)
	placed := eventsOf(t, pool, schema, "torder-o-1")
	require.Len(t, placed, 1)
	require.Equal(t, place.SpanContext().SpanID(), telemetry.SpanContextOf(placed[0].Metadata.Extra).SpanID(),
		"the event carries the command's span context")

	var batchOfPlaced sdktrace.ReadOnlySpan
	for _, b := range spansNamed(spans, model) {
		if b.Parent().SpanID() == place.SpanContext().SpanID() {
			batchOfPlaced = b
		}
	}
	require.NotNil(t, batchOfPlaced, "a batch of %s is a child of the command whose event it applied first", flow.model())
	requireChild(t, batchOfPlaced, place)

	step := spanNamed(t, spans, "saga "+flow.sagaName()+" TraceOrderPlaced")
	requireChild(t, step, place)
	require.NotEmpty(t, step.Links(), "the step links to the saga's projection batch")
	sagaBatch := false
	for _, b := range spansNamed(spans, sagaModel) {
		if b.SpanContext().SpanID() == step.Links()[0].SpanContext.SpanID() {
			sagaBatch = true
			requireChild(t, b, place)
		}
	}
	require.True(t, sagaBatch, "the step's link is the batch that applied it")

	// The outbox keeps the step's context; the relay's send is its child,
	// and the command it dispatched the send's child.
	var outboxTrace map[string]string
	require.NoError(t, pool.QueryRow(context.Background(), `SELECT trace_context FROM `+pgx.Identifier{schema, "saga_outbox"}.Sanitize()+
		` WHERE saga = $1 AND command_type = 'ReserveTraceStock'`, flow.sagaName()).Scan(&outboxTrace))
	require.Equal(t, step.SpanContext().SpanID(), telemetry.SpanContextOf(outboxTrace).SpanID())
	send := spanNamed(t, spans, "saga "+flow.sagaName()+" send ReserveTraceStock")
	requireChild(t, send, step)
	reserve := spanNamed(t, spans, "command ReserveTraceStock")
	requireChild(t, reserve, send)

	// ... whose event goes on to the saga's next step and the read model.
	reserved := eventsOf(t, pool, schema, "tstock-o-1")
	require.Len(t, reserved, 1)
	require.Equal(t, reserve.SpanContext().SpanID(), telemetry.SpanContextOf(reserved[0].Metadata.Extra).SpanID())
	requireChild(t, spanNamed(t, spans, "saga "+flow.sagaName()+" TraceStockReserved"), reserve)
	applied := false
	for _, b := range spansNamed(spans, model) {
		applied = applied || parentOrLinked(b, reserve.SpanContext())
	}
	require.True(t, applied, "the batch that applied TraceStockReserved is the child of (or links to) its command")

	for _, s := range spans {
		require.Equal(t, clientTrace, s.SpanContext().TraceID().String(), "span %q is in the one trace", s.Name())
	}
}

// otlpReceiver counts the OTLP/HTTP trace exports it receives.
func otlpReceiver(t *testing.T) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var exports atomic.Int64
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/traces" {
			exports.Add(1)
		}
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(ts.Close)
	return ts, &exports
}

func TestTracingOffExportsNothingAndWritesNoTraceContext(t *testing.T) {
	receiver, exports := otlpReceiver(t)
	t.Setenv("OTEL_TRACES_EXPORTER", "none")
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.URL)
	// A client's traceparent is not passed on either.
	pool, schema, flow := runTracedFlow(t, app.Config{}, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")

	for _, stream := range []string{"torder-o-1", "tstock-o-1"} {
		evs := eventsOf(t, pool, schema, stream)
		require.Len(t, evs, 1)
		require.NotContains(t, evs[0].Metadata.Extra, telemetry.TraceParentKey, "stream %s", stream)
	}
	var traced int
	require.NoError(t, pool.QueryRow(context.Background(), `SELECT count(*) FROM `+pgx.Identifier{schema, "saga_outbox"}.Sanitize()+
		` WHERE saga = $1 AND trace_context IS NOT NULL`, flow.sagaName()).Scan(&traced))
	require.Zero(t, traced, "no trace context in the outbox")
	require.Zero(t, exports.Load(), "nothing exported")
}

func TestTracingOnFromTheEnvironmentExportsOverOTLP(t *testing.T) {
	receiver, exports := otlpReceiver(t)
	t.Setenv("OTEL_TRACES_EXPORTER", "otlp")
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.URL)
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
	pool, schema, _ := runTracedFlow(t, app.Config{}, "")
	// The App has closed: its provider exported what was queued.
	require.Positive(t, exports.Load(), "spans exported to the OTLP endpoint")
	evs := eventsOf(t, pool, schema, "torder-o-1")
	require.Len(t, evs, 1)
	require.True(t, telemetry.SpanContextOf(evs[0].Metadata.Extra).IsValid())
}

func TestTracingEnvironment(t *testing.T) {
	for _, tc := range []struct {
		env  map[string]string
		on   bool
		fail string
	}{
		{env: map[string]string{}, on: false},
		{env: map[string]string{"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1"}, on: false},
		{env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1"}, on: true},
		{env: map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:1/v1/traces"}, on: true},
		{env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp"}, on: true},
		{env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, on: true},
		{env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "true"}, on: false},
		{env: map[string]string{"OTEL_TRACES_EXPORTER": "zipkin"}, fail: "supported exporters are otlp and none"},
		{env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, fail: "supported protocols"},
	} {
		t.Run(fmt.Sprint(tc.env), func(t *testing.T) {
			for _, k := range []string{"OTEL_SDK_DISABLED", "OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT",
				"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"} {
				t.Setenv(k, tc.env[k])
			}
			tp, err := app.TracerProviderFromEnv(context.Background(), "svc")
			if tc.fail != "" {
				require.ErrorContains(t, err, tc.fail)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.on, tp != nil)
			if tp != nil {
				require.NoError(t, tp.Shutdown(context.Background()))
			}
		})
	}
}
