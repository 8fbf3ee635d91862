package command_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cairn-es/cairn/aggregate"
	"github.com/cairn-es/cairn/command"
	"github.com/cairn-es/cairn/eventstore"
	"github.com/cairn-es/cairn/eventstore/memory"
)

// captured is one log record as the tests read it.
type captured struct {
	level   slog.Level
	msg     string
	outcome string
}

// capture is a slog handler keeping every record, so that a test can read
// each record's level and outcome attribute.
type capture struct {
	mu      sync.Mutex
	records []captured
}

func (c *capture) Enabled(context.Context, slog.Level) bool { return true }
func (c *capture) WithAttrs([]slog.Attr) slog.Handler       { return c }
func (c *capture) WithGroup(string) slog.Handler            { return c }
func (c *capture) Handle(_ context.Context, r slog.Record) error {
	rec := captured{level: r.Level, msg: r.Message}
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "outcome" {
			rec.outcome = a.Value.String()
		}
		return true
	})
	c.mu.Lock()
	defer c.mu.Unlock()
	c.records = append(c.records, rec)
	return nil
}

func (c *capture) all() []captured {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]captured(nil), c.records...)
}

// A refusal is a business answer (Info); contention, backpressure, client
// misuse and cancellation are worth a look (Warn); only the system's own
// failures are errors.
func TestLoggingLevelsAndOutcomes(t *testing.T) {
	conflict := &eventstore.ConcurrencyError{StreamID: "order-1"}
	cases := []struct {
		name    string
		res     command.Result
		err     error
		level   slog.Level
		outcome string
	}{
		{"ok", command.Result{StreamID: "order-1", Version: 1}, nil, slog.LevelInfo, "ok"},
		{"duplicate", command.Result{Duplicate: true}, nil, slog.LevelInfo, "duplicate"},
		{"validation", command.Result{}, &command.ValidationError{CommandType: "PlaceOrder", Err: errors.New("order ID is required")}, slog.LevelInfo, "invalid"},
		{"domain refusal", command.Result{}, command.Reject(errors.New("order already shipped")), slog.LevelInfo, "rejected"},
		{"refusal naming a missing aggregate", command.Result{}, command.Reject(&aggregate.NotFoundError{ID: "9", StreamID: "order-9", Err: &eventstore.StreamNotFoundError{StreamID: "order-9"}}), slog.LevelInfo, "rejected"},
		{"unknown aggregate", command.Result{}, fmt.Errorf("cancel: %w", &aggregate.NotFoundError{ID: "9", StreamID: "order-9", Err: &eventstore.StreamNotFoundError{StreamID: "order-9"}}), slog.LevelInfo, "not_found"},
		{"missing stream", command.Result{}, &eventstore.StreamNotFoundError{StreamID: "order-9"}, slog.LevelInfo, "not_found"},
		{"conflict after retries", command.Result{}, fmt.Errorf("command: giving up after 5 attempts: %w", conflict), slog.LevelWarn, "conflict"},
		{"canceled while retrying a conflict", command.Result{}, fmt.Errorf("command: %w while retrying after %w", context.DeadlineExceeded, conflict), slog.LevelWarn, "canceled"},
		{"overloaded", command.Result{}, &command.OverloadedError{Reason: "saga backlog", RetryAfter: time.Second}, slog.LevelWarn, "overloaded"},
		{"reused ID", command.Result{}, &eventstore.IdempotencyKeyReusedError{CommandID: "c-1"}, slog.LevelWarn, "idempotency_key_reused"},
		{"unknown command", command.Result{}, &command.UnknownCommandError{CommandType: "Nope", GoType: "main.Nope"}, slog.LevelWarn, "unknown_command"},
		{"infrastructure", command.Result{}, errors.New("dial tcp 127.0.0.1:5432: connect: connection refused"), slog.LevelError, "error"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			logs := &capture{}
			h := command.Logging(slog.New(logs))(func(context.Context, command.Envelope) (command.Result, error) {
				return c.res, c.err
			})
			res, err := h(context.Background(), command.Envelope{ID: "c-1", CorrelationID: "c-1", Payload: PlaceOrder{OrderID: "1"}})
			require.Equal(t, c.res, res, "Logging passes the result through")
			require.Equal(t, c.err, err, "Logging passes the error through")
			got := logs.all()
			require.Len(t, got, 1)
			require.Equal(t, "command handled", got[0].msg)
			require.Equal(t, c.level, got[0].level)
			require.Equal(t, c.outcome, got[0].outcome)
		})
	}
}

// Through the default chain: a command for an aggregate that does not
// exist, a domain refusal and a validation failure are Info records; the
// handler's own failure is the one Error.
func TestDispatcherLogsRefusalsAtInfo(t *testing.T) {
	store := memory.New(memory.Config{})
	reg := eventstore.NewRegistry()
	eventstore.MustRegister[TabOpened](reg, "TabOpened")
	tabs := aggregate.NewRepository(store, reg, "tab", func() *tab { return &tab{} }, aggregate.Config{})
	logs := &capture{}
	d := command.NewDispatcher(store, command.Config{Logger: slog.New(logs), Retry: fastRetry})
	command.MustRegister(d, func(ctx context.Context, cmd OpenTab) (eventstore.AppendResult, error) {
		if cmd.Table < 0 {
			return eventstore.AppendResult{}, errors.New("the printer is on fire")
		}
		t, err := tabs.Load(ctx, cmd.TabID) // the tab must exist already
		if err != nil {
			return eventstore.AppendResult{}, err
		}
		if t.Open {
			return eventstore.AppendResult{}, command.Reject(errors.New("tab already open"))
		}
		return eventstore.AppendResult{}, nil
	})
	command.MustRegister(d, placeOrder(store, &counter{}))
	ctx := context.Background()
	_, err := store.Append(ctx, "tab-open", eventstore.NoStream, []eventstore.Event{event("TabOpened", TabOpened{Table: 1})})
	require.NoError(t, err)

	_, err = d.Dispatch(ctx, OpenTab{TabID: "nope"})
	require.ErrorIs(t, err, aggregate.ErrNotFound)
	_, err = d.Dispatch(ctx, OpenTab{TabID: "open"})
	require.ErrorIs(t, err, command.ErrRejected)
	_, err = d.Dispatch(ctx, PlaceOrder{})
	require.ErrorIs(t, err, command.ErrInvalidCommand)
	_, err = d.Dispatch(ctx, OpenTab{TabID: "open", Table: -1})
	require.EqualError(t, err, "the printer is on fire")

	require.Equal(t, []captured{
		{slog.LevelInfo, "command handled", "not_found"},
		{slog.LevelInfo, "command handled", "rejected"},
		{slog.LevelInfo, "command handled", "invalid"},
		{slog.LevelError, "command handled", "error"},
	}, logs.all())
}
