package command_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/cairn-es/cairn/command"
	"github.com/cairn-es/cairn/eventstore"
	"github.com/cairn-es/cairn/eventstore/memory"
	"github.com/cairn-es/cairn/retry"
)

func noop[C any](context.Context, C) (eventstore.AppendResult, error) {
	return eventstore.AppendResult{}, nil
}

func TestTypeName(t *testing.T) {
	require.Equal(t, "PlaceOrder", command.TypeName(PlaceOrder{}))
	require.Equal(t, "PlaceOrder", command.TypeName(&PlaceOrder{}))
	require.Equal(t, "CancelOrder", command.TypeName(cancelOrder{}), "pointer-receiver CommandName applies to values")
	require.Equal(t, "CancelOrder", command.TypeName(&cancelOrder{}))
	require.Equal(t, "", command.TypeName(nil))
	require.Equal(t, "CancelOrder", command.Envelope{Payload: cancelOrder{}}.Type())
}

func TestRegisterDuplicate(t *testing.T) {
	d := command.NewDispatcher(memory.New(memory.Config{}), quiet)
	require.NoError(t, command.Register(d, noop[PlaceOrder]))

	err := command.Register(d, noop[PlaceOrder])
	require.ErrorIs(t, err, command.ErrDuplicateHandler)
	var dup *command.DuplicateHandlerError
	require.ErrorAs(t, err, &dup)
	require.Equal(t, "PlaceOrder", dup.CommandType)

	require.PanicsWithError(t, err.Error(), func() { command.MustRegister(d, noop[PlaceOrder]) })

	// Another Go type with the same command name is a duplicate too: the
	// name is what the command log records.
	require.NoError(t, command.Register(d, noop[cancelOrder]))
	type CancelOrder struct{}
	require.ErrorIs(t, command.Register(d, noop[CancelOrder]), command.ErrDuplicateHandler)

	require.Error(t, command.Register[PlaceOrder](d, nil), "nil handler")
	err = command.Register(d, noop[any])
	require.Error(t, err, "interface type")
	require.NotErrorIs(t, err, command.ErrDuplicateHandler)
}

func TestDispatchUnknownCommand(t *testing.T) {
	store := memory.New(memory.Config{})
	d := command.NewDispatcher(store, quiet)
	command.MustRegister(d, noop[PlaceOrder])

	res, err := d.Dispatch(context.Background(), cancelOrder{OrderID: "1"})
	require.ErrorIs(t, err, command.ErrUnknownCommand)
	var unknown *command.UnknownCommandError
	require.ErrorAs(t, err, &unknown)
	require.Equal(t, "CancelOrder", unknown.CommandType)
	require.NotEmpty(t, res.CommandID, "the generated ID is returned even on error")

	// A pointer to a registered type is a different Go type.
	_, err = d.Dispatch(context.Background(), &PlaceOrder{OrderID: "1"})
	require.ErrorIs(t, err, command.ErrUnknownCommand)

	// A command registered under the same name from another Go type.
	type PlaceOrder struct{ OrderID string }
	_, err = d.Dispatch(context.Background(), PlaceOrder{OrderID: "1"})
	require.ErrorIs(t, err, command.ErrUnknownCommand)
}

func TestDispatchEnvelopeDefaults(t *testing.T) {
	store := memory.New(memory.Config{})
	d := command.NewDispatcher(store, quiet)
	var seen command.Envelope
	command.MustRegister(d, func(ctx context.Context, cmd PlaceOrder) (eventstore.AppendResult, error) {
		env, ok := command.EnvelopeFrom(ctx)
		require.True(t, ok)
		seen = env
		return noop(ctx, cmd)
	})
	ctx := context.Background()

	res, err := d.Dispatch(ctx, PlaceOrder{OrderID: "1"})
	require.NoError(t, err)
	id, err := uuid.Parse(res.CommandID)
	require.NoError(t, err)
	require.Equal(t, uuid.Version(7), id.Version())
	require.Equal(t, res.CommandID, seen.ID)
	require.Equal(t, res.CommandID, seen.CorrelationID, "the correlation ID defaults to the command ID")

	env := &command.Envelope{ID: "c-1", CausationID: "evt-9", Metadata: map[string]string{"user": "ann"}, Payload: PlaceOrder{OrderID: "2"}}
	res, err = d.Dispatch(ctx, env)
	require.NoError(t, err)
	require.Equal(t, "c-1", res.CommandID)
	require.Equal(t, command.Envelope{ID: "c-1", CorrelationID: "c-1", CausationID: "evt-9", Metadata: map[string]string{"user": "ann"}, Payload: PlaceOrder{OrderID: "2"}}, seen)
	require.Empty(t, env.CorrelationID, "the caller's envelope is not modified")
}

func TestDispatchInvalidEnvelope(t *testing.T) {
	d := command.NewDispatcher(memory.New(memory.Config{}), quiet)
	command.MustRegister(d, noop[PlaceOrder])
	ctx := context.Background()
	for name, cmd := range map[string]any{
		"nil":              nil,
		"nil envelope":     (*command.Envelope)(nil),
		"nil payload":      command.Envelope{ID: "x"},
		"ID too long":      command.Envelope{ID: strings.Repeat("x", eventstore.MaxCommandIDLength+1), Payload: PlaceOrder{OrderID: "1"}},
		"control in ID":    command.Envelope{ID: "a\nb", Payload: PlaceOrder{OrderID: "1"}},
		"invalid UTF-8 ID": command.Envelope{ID: "a\xffb", Payload: PlaceOrder{OrderID: "1"}},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := d.Dispatch(ctx, cmd)
			require.ErrorIs(t, err, command.ErrInvalidCommand)
		})
	}
}

func TestValidationFailureSkipsHandler(t *testing.T) {
	store := memory.New(memory.Config{})
	var calls counter
	d := command.NewDispatcher(store, quiet)
	command.MustRegister(d, placeOrder(store, &calls))

	res, err := d.Dispatch(context.Background(), command.Envelope{ID: "c-1", Payload: PlaceOrder{Amount: 5}})
	require.ErrorIs(t, err, command.ErrInvalidCommand)
	var verr *command.ValidationError
	require.ErrorAs(t, err, &verr)
	require.Equal(t, "PlaceOrder", verr.CommandType)
	require.Equal(t, "c-1", verr.CommandID)
	require.EqualError(t, verr.Err, "order ID is required")
	require.Equal(t, "c-1", res.CommandID)
	require.Zero(t, calls.get(), "the handler must not run")

	_, found, err := store.HandledCommand(context.Background(), "c-1")
	require.NoError(t, err)
	require.False(t, found)
}

type fieldError struct{ Field string }

func (e *fieldError) Error() string { return e.Field + " is wrong" }

type withFieldError struct{}

func (*withFieldError) Validate() error { return &fieldError{Field: "name"} }

func TestValidationErrorExposesCause(t *testing.T) {
	d := command.NewDispatcher(nil, quiet)
	command.MustRegister(d, noop[withFieldError])
	_, err := d.Dispatch(context.Background(), withFieldError{})
	require.ErrorIs(t, err, command.ErrInvalidCommand, "pointer-receiver Validate applies to values")
	var fe *fieldError
	require.ErrorAs(t, err, &fe)
	require.Equal(t, "name", fe.Field)
}

func TestTimeout(t *testing.T) {
	var calls counter
	d := command.NewDispatcher(memory.New(memory.Config{}), command.Config{Logger: quiet.Logger, Timeout: 20 * time.Millisecond})
	command.MustRegister(d, func(ctx context.Context, _ PlaceOrder) (eventstore.AppendResult, error) {
		calls.inc()
		_, ok := ctx.Deadline()
		require.True(t, ok)
		<-ctx.Done()
		return eventstore.AppendResult{}, ctx.Err()
	})
	start := time.Now()
	_, err := d.Dispatch(context.Background(), PlaceOrder{OrderID: "1"})
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.Less(t, time.Since(start), 5*time.Second)
	require.EqualValues(t, 1, calls.get())
}

func TestTimeoutBoundsRetries(t *testing.T) {
	var calls counter
	// No command log: the deadline can then only be noticed by Retry.
	d := command.NewDispatcher(nil, command.Config{Logger: quiet.Logger,
		Timeout: 30 * time.Millisecond,
		Retry:   retry.Policy{MaxAttempts: 1000, BaseDelay: 5 * time.Millisecond, MaxDelay: 5 * time.Millisecond}})
	command.MustRegister(d, func(context.Context, PlaceOrder) (eventstore.AppendResult, error) {
		calls.inc()
		return eventstore.AppendResult{}, &eventstore.ConcurrencyError{StreamID: "order-1", Expected: eventstore.NoStream, Actual: 1}
	})
	start := time.Now()
	_, err := d.Dispatch(context.Background(), PlaceOrder{OrderID: "1"})
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.ErrorIs(t, err, eventstore.ErrConcurrency)
	require.Less(t, time.Since(start), 5*time.Second)
	require.Less(t, calls.get(), int32(1000))
}

// conflictingWriter returns a PlaceOrder handler that appends to an existing
// stream at the version it read, and for its first n calls lets another
// writer append in between, as a concurrent command would.
func conflictingWriter(store eventstore.Store, n int32, calls *counter) func(context.Context, PlaceOrder) (eventstore.AppendResult, error) {
	return func(ctx context.Context, cmd PlaceOrder) (eventstore.AppendResult, error) {
		calls.inc()
		stream := "order-" + cmd.OrderID
		evs, err := store.ReadStream(ctx, stream, eventstore.ReadStreamOptions{Direction: eventstore.Backward, Limit: 1})
		if err != nil {
			return eventstore.AppendResult{}, err
		}
		version := evs[0].Version
		if calls.get() <= n {
			if _, err := store.Append(context.Background(), stream, eventstore.Any, []eventstore.Event{event("Interfered", struct{}{})}); err != nil {
				return eventstore.AppendResult{}, err
			}
		}
		return save(ctx, store, stream, eventstore.Exact(version), event("OrderAmended", cmd))
	}
}

func TestRetrySucceedsAfterConflicts(t *testing.T) {
	store := memory.New(memory.Config{})
	ctx := context.Background()
	_, err := store.Append(ctx, "order-1", eventstore.NoStream, []eventstore.Event{event("OrderPlaced", OrderPlaced{OrderID: "1"})})
	require.NoError(t, err)

	var calls counter
	d := command.NewDispatcher(store, quietWith(fastRetry))
	command.MustRegister(d, conflictingWriter(store, 3, &calls))

	res, err := d.Dispatch(ctx, command.Envelope{ID: "amend-1", Payload: PlaceOrder{OrderID: "1", Amount: 7}})
	require.NoError(t, err)
	require.EqualValues(t, 4, calls.get(), "three conflicts, then success")
	require.Equal(t, command.Result{CommandID: "amend-1", StreamID: "order-1", Version: 5, Position: res.Position, Events: 1}, res)

	evs, err := store.ReadStream(ctx, "order-1", eventstore.ReadStreamOptions{})
	require.NoError(t, err)
	require.Len(t, evs, 5)
	require.Equal(t, "OrderAmended", evs[4].Type)
	require.Equal(t, res.Position, evs[4].Position)
}

func TestRetryGivesUp(t *testing.T) {
	store := memory.New(memory.Config{})
	ctx := context.Background()
	_, err := store.Append(ctx, "order-1", eventstore.NoStream, []eventstore.Event{event("OrderPlaced", OrderPlaced{OrderID: "1"})})
	require.NoError(t, err)

	var calls counter
	d := command.NewDispatcher(store, quietWith(fastRetry))
	command.MustRegister(d, conflictingWriter(store, 1000, &calls))

	res, err := d.Dispatch(ctx, command.Envelope{ID: "amend-1", Payload: PlaceOrder{OrderID: "1"}})
	require.ErrorIs(t, err, eventstore.ErrConcurrency)
	var conflict *eventstore.ConcurrencyError
	require.ErrorAs(t, err, &conflict)
	require.Equal(t, "order-1", conflict.StreamID)
	require.EqualValues(t, fastRetry.MaxAttempts, calls.get())
	require.Equal(t, command.Result{CommandID: "amend-1"}, res)

	_, found, err := store.HandledCommand(ctx, "amend-1")
	require.NoError(t, err)
	require.False(t, found)
}

func TestRetryDisabled(t *testing.T) {
	var calls counter
	d := command.NewDispatcher(nil, quietWith(retry.Policy{MaxAttempts: 1}))
	command.MustRegister(d, func(context.Context, PlaceOrder) (eventstore.AppendResult, error) {
		calls.inc()
		return eventstore.AppendResult{}, &eventstore.ConcurrencyError{StreamID: "order-1"}
	})
	_, err := d.Dispatch(context.Background(), PlaceOrder{OrderID: "1"})
	require.ErrorIs(t, err, eventstore.ErrConcurrency)
	require.EqualValues(t, 1, calls.get())
}

func TestRetryIgnoresOtherErrors(t *testing.T) {
	errDomain := errors.New("order already shipped")
	for name, failure := range map[string]error{
		"domain error":  errDomain,
		"store error":   &eventstore.StreamNotFoundError{StreamID: "order-1"},
		"wrapped":       errors.Join(errors.New("loading"), errDomain),
		"invalid event": &eventstore.ValidationError{Err: eventstore.ErrInvalidEvent, StreamID: "order-1", Index: 0, Reason: "bad"},
	} {
		t.Run(name, func(t *testing.T) {
			var calls counter
			d := command.NewDispatcher(memory.New(memory.Config{}), quietWith(fastRetry))
			command.MustRegister(d, func(context.Context, PlaceOrder) (eventstore.AppendResult, error) {
				calls.inc()
				return eventstore.AppendResult{}, failure
			})
			_, err := d.Dispatch(context.Background(), PlaceOrder{OrderID: "1"})
			require.ErrorIs(t, err, failure)
			require.EqualValues(t, 1, calls.get())
		})
	}
}

func TestRetryStopsWhenContextEnds(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var calls counter
	d := command.NewDispatcher(nil, quietWith(retry.Policy{MaxAttempts: 10, BaseDelay: time.Hour, MaxDelay: time.Hour}))
	command.MustRegister(d, func(context.Context, PlaceOrder) (eventstore.AppendResult, error) {
		calls.inc()
		time.AfterFunc(10*time.Millisecond, cancel)
		return eventstore.AppendResult{}, &eventstore.ConcurrencyError{StreamID: "order-1"}
	})
	start := time.Now()
	_, err := d.Dispatch(ctx, PlaceOrder{OrderID: "1"})
	require.ErrorIs(t, err, context.Canceled)
	require.ErrorIs(t, err, eventstore.ErrConcurrency)
	require.Less(t, time.Since(start), 5*time.Second)
	require.EqualValues(t, 1, calls.get())
}

func TestRetryWaitsThePolicysDelays(t *testing.T) {
	// Observe the waits through the time between attempts: with a base of
	// 20ms and a cap of 40ms, each wait is retry.Policy's delay, in
	// [10ms, 40ms]: never immediate, never above the cap (plus scheduling
	// slack). A timer never fires early, so the lower bound is exact.
	var stamps []time.Time
	d := command.NewDispatcher(nil, quietWith(retry.Policy{MaxAttempts: 12, BaseDelay: 20 * time.Millisecond, MaxDelay: 40 * time.Millisecond}))
	command.MustRegister(d, func(context.Context, PlaceOrder) (eventstore.AppendResult, error) {
		stamps = append(stamps, time.Now())
		return eventstore.AppendResult{}, &eventstore.ConcurrencyError{StreamID: "order-1"}
	})
	_, err := d.Dispatch(context.Background(), PlaceOrder{OrderID: "1"})
	require.ErrorIs(t, err, eventstore.ErrConcurrency)
	require.Len(t, stamps, 12)
	for i := 1; i < len(stamps); i++ {
		gap := stamps[i].Sub(stamps[i-1])
		require.GreaterOrEqual(t, gap, 10*time.Millisecond, "wait %d", i)
		require.Less(t, gap, 40*time.Millisecond+200*time.Millisecond, "wait %d", i)
	}
}

func TestIdempotentRedelivery(t *testing.T) {
	store := memory.New(memory.Config{})
	var calls counter
	d := command.NewDispatcher(store, quiet)
	command.MustRegister(d, placeOrder(store, &calls))
	ctx := context.Background()
	cmd := command.Envelope{ID: "place-1", Payload: PlaceOrder{OrderID: "1", Amount: 10}}

	first, err := d.Dispatch(ctx, cmd)
	require.NoError(t, err)
	require.False(t, first.Duplicate)
	require.Equal(t, "order-1", first.StreamID)
	require.EqualValues(t, 1, first.Version)
	require.False(t, first.Position.IsZero())

	for range 3 {
		again, err := d.Dispatch(ctx, cmd)
		require.NoError(t, err)
		require.True(t, again.Duplicate)
		again.Duplicate = false
		require.Equal(t, first, again)
	}
	require.EqualValues(t, 1, calls.get(), "the handler ran once")
	evs, err := store.ReadStream(ctx, "order-1", eventstore.ReadStreamOptions{})
	require.NoError(t, err)
	require.Len(t, evs, 1)

	rec, found, err := store.HandledCommand(ctx, "place-1")
	require.NoError(t, err)
	require.True(t, found)
	require.Equal(t, "PlaceOrder", rec.Type)
	want, err := command.PayloadHash(PlaceOrder{OrderID: "1", Amount: 10})
	require.NoError(t, err)
	require.Equal(t, want, rec.PayloadHash)
}

func TestIdempotencyKeyReused(t *testing.T) {
	store := memory.New(memory.Config{})
	var calls counter
	d := command.NewDispatcher(store, quiet)
	command.MustRegister(d, placeOrder(store, &calls))
	command.MustRegister(d, func(ctx context.Context, cmd *cancelOrder) (eventstore.AppendResult, error) {
		calls.inc()
		return save(ctx, store, "order-"+cmd.OrderID, eventstore.StreamExists, event("OrderCancelled", cmd))
	})
	ctx := context.Background()

	_, err := d.Dispatch(ctx, command.Envelope{ID: "k", Payload: PlaceOrder{OrderID: "1", Amount: 10}})
	require.NoError(t, err)

	res, err := d.Dispatch(ctx, command.Envelope{ID: "k", Payload: PlaceOrder{OrderID: "1", Amount: 11}})
	require.ErrorIs(t, err, eventstore.ErrIdempotencyKeyReused)
	var reused *eventstore.IdempotencyKeyReusedError
	require.ErrorAs(t, err, &reused)
	require.Equal(t, "k", reused.CommandID)
	require.Equal(t, command.Result{CommandID: "k"}, res)

	// Same ID on another command type.
	_, err = d.Dispatch(ctx, command.Envelope{ID: "k", Payload: &cancelOrder{OrderID: "1"}})
	require.ErrorIs(t, err, eventstore.ErrIdempotencyKeyReused)

	require.EqualValues(t, 1, calls.get())
}

func TestStoreResolvesDuplicatesWithoutLookup(t *testing.T) {
	// Without a command log the handler runs again, but the store's command
	// record makes the second append a duplicate: the race the look-up
	// cannot close is closed by the store.
	store := memory.New(memory.Config{})
	var calls counter
	d := command.NewDispatcher(nil, quiet)
	command.MustRegister(d, placeOrder(store, &calls))
	ctx := context.Background()
	cmd := command.Envelope{ID: "place-1", Payload: PlaceOrder{OrderID: "1"}}

	first, err := d.Dispatch(ctx, cmd)
	require.NoError(t, err)
	second, err := d.Dispatch(ctx, cmd)
	require.NoError(t, err)
	require.EqualValues(t, 2, calls.get())
	require.True(t, second.Duplicate)
	second.Duplicate = false
	require.Equal(t, first, second)

	_, err = d.Dispatch(ctx, command.Envelope{ID: "place-1", Payload: PlaceOrder{OrderID: "1", Amount: 3}})
	require.ErrorIs(t, err, eventstore.ErrIdempotencyKeyReused)
}

func TestCommandThatAppendsNothingIsNotRecorded(t *testing.T) {
	store := memory.New(memory.Config{})
	var calls counter
	d := command.NewDispatcher(store, quiet)
	command.MustRegister(d, func(context.Context, PlaceOrder) (eventstore.AppendResult, error) {
		calls.inc()
		return eventstore.AppendResult{}, nil // decided nothing needs to change
	})
	ctx := context.Background()
	cmd := command.Envelope{ID: "noop-1", Payload: PlaceOrder{OrderID: "1"}}
	for range 2 {
		res, err := d.Dispatch(ctx, cmd)
		require.NoError(t, err)
		require.Equal(t, command.Result{CommandID: "noop-1"}, res)
	}
	require.EqualValues(t, 2, calls.get(), "nothing recorded, so the handler runs again")
	_, found, err := store.HandledCommand(ctx, "noop-1")
	require.NoError(t, err)
	require.False(t, found)
}

func TestCorrelationAndCausationPropagate(t *testing.T) {
	store := memory.New(memory.Config{})
	d := command.NewDispatcher(store, quiet)
	var causation eventstore.Causation
	command.MustRegister(d, func(ctx context.Context, cmd PlaceOrder) (eventstore.AppendResult, error) {
		c, ok := eventstore.CausationFrom(ctx)
		require.True(t, ok)
		causation = c
		return save(ctx, store, "order-"+cmd.OrderID, eventstore.NoStream,
			event("OrderPlaced", OrderPlaced(cmd)), event("PaymentRequested", struct{}{}))
	})
	ctx := context.Background()

	_, err := d.Dispatch(ctx, command.Envelope{ID: "cmd-42", CorrelationID: "req-7", CausationID: "evt-9",
		Metadata: map[string]string{"tenant": "acme"}, Payload: PlaceOrder{OrderID: "1"}})
	require.NoError(t, err)
	hash, err := command.PayloadHash(PlaceOrder{OrderID: "1"})
	require.NoError(t, err)
	require.Equal(t, eventstore.Causation{CommandID: "cmd-42", CommandType: "PlaceOrder", CorrelationID: "req-7",
		CausedBy: "evt-9", PayloadHash: hash, Metadata: map[string]string{"tenant": "acme"}}, causation)

	evs, err := store.ReadStream(ctx, "order-1", eventstore.ReadStreamOptions{})
	require.NoError(t, err)
	require.Len(t, evs, 2)
	for _, e := range evs {
		require.Equal(t, map[string]string{"tenant": "acme", "caused_by": "evt-9"}, e.Metadata.Extra)
		require.Equal(t, "req-7", e.Metadata.CorrelationID)
		require.Equal(t, "cmd-42", e.Metadata.CausationID)
		require.Equal(t, "cmd-42", e.Metadata.CommandID)
	}

	// Without a correlation ID, the command starts its own correlation.
	res, err := d.Dispatch(ctx, PlaceOrder{OrderID: "2"})
	require.NoError(t, err)
	evs, err = store.ReadStream(ctx, "order-2", eventstore.ReadStreamOptions{})
	require.NoError(t, err)
	require.Equal(t, res.CommandID, evs[0].Metadata.CorrelationID)
	require.Equal(t, res.CommandID, evs[0].Metadata.CausationID)
}

func TestLogging(t *testing.T) {
	var buf bytes.Buffer
	logger := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	store := memory.New(memory.Config{})
	var calls counter
	d := command.NewDispatcher(store, command.Config{Logger: logger})
	command.MustRegister(d, placeOrder(store, &calls))
	ctx := context.Background()

	cmd := command.Envelope{ID: "c-1", CorrelationID: "r-1", Payload: PlaceOrder{OrderID: "1"}}
	_, err := d.Dispatch(ctx, cmd)
	require.NoError(t, err)
	_, err = d.Dispatch(ctx, cmd)
	require.NoError(t, err)
	_, err = d.Dispatch(ctx, command.Envelope{ID: "c-2", Payload: PlaceOrder{}})
	require.Error(t, err)
	_, err = d.Dispatch(ctx, command.Envelope{ID: "c-3", Payload: PlaceOrder{OrderID: "1"}})
	require.Error(t, err) // the stream exists

	var records []map[string]any
	for line := range strings.Lines(buf.String()) {
		var r map[string]any
		require.NoError(t, json.Unmarshal([]byte(line), &r))
		records = append(records, r)
	}
	require.Len(t, records, 4)
	for _, r := range records {
		require.Equal(t, "command handled", r["msg"])
		require.Equal(t, "PlaceOrder", r["command_type"])
		require.Contains(t, r, "duration")
	}
	require.Equal(t, "c-1", records[0]["command_id"])
	require.Equal(t, "r-1", records[0]["correlation_id"])
	require.Equal(t, "INFO", records[0]["level"])
	require.Equal(t, "ok", records[0]["outcome"])
	require.Equal(t, "order-1", records[0]["stream_id"])
	require.Equal(t, "duplicate", records[1]["outcome"])
	require.Equal(t, "invalid", records[2]["outcome"], "validation failures are logged: Logging is outside Validation")
	require.Equal(t, "INFO", records[2]["level"], "a validation failure is the client's answer, not the operator's problem")
	require.Equal(t, "c-2", records[2]["correlation_id"])
	require.Contains(t, records[2]["error"], "order ID is required")
	require.Equal(t, "conflict", records[3]["outcome"])
}

func TestMiddlewareOrder(t *testing.T) {
	var trace []string
	mark := func(name string) command.Middleware {
		return func(next command.Handler) command.Handler {
			return func(ctx context.Context, env command.Envelope) (command.Result, error) {
				trace = append(trace, name)
				return next(ctx, env)
			}
		}
	}
	var calls counter
	d := command.NewDispatcher(nil, command.Config{Logger: quiet.Logger, Retry: fastRetry, Middleware: []command.Middleware{mark("a"), mark("b")}})
	command.MustRegister(d, func(context.Context, PlaceOrder) (eventstore.AppendResult, error) {
		calls.inc()
		trace = append(trace, "handler")
		if calls.get() < 3 {
			return eventstore.AppendResult{}, &eventstore.ConcurrencyError{StreamID: "order-1"}
		}
		return eventstore.AppendResult{}, nil
	})
	_, err := d.Dispatch(context.Background(), PlaceOrder{OrderID: "1"})
	require.NoError(t, err)
	require.Equal(t, []string{"a", "b", "handler", "handler", "handler"}, trace, "added middleware runs once, outside Retry")

	// Added middleware runs before Validation.
	trace = nil
	_, err = d.Dispatch(context.Background(), PlaceOrder{})
	require.ErrorIs(t, err, command.ErrInvalidCommand)
	require.Equal(t, []string{"a", "b"}, trace)

	// Config.Chain replaces the chain: no validation, no retry.
	trace = nil
	calls.n.Store(0)
	d = command.NewDispatcher(nil, command.Config{Chain: []command.Middleware{mark("only")}})
	command.MustRegister(d, func(context.Context, PlaceOrder) (eventstore.AppendResult, error) {
		calls.inc()
		trace = append(trace, "handler")
		return eventstore.AppendResult{}, &eventstore.ConcurrencyError{StreamID: "order-1"}
	})
	_, err = d.Dispatch(context.Background(), PlaceOrder{})
	require.ErrorIs(t, err, eventstore.ErrConcurrency)
	require.Equal(t, []string{"only", "handler"}, trace)
}

func TestConcurrentDispatchRunsOnce(t *testing.T) {
	proveSingleExecution(t, memory.New(memory.Config{}))
}

func TestRecordWithoutHashIsNotAResubmission(t *testing.T) {
	store := memory.New(memory.Config{})
	ctx := context.Background()
	_, err := store.Append(ctx, "order-1", eventstore.NoStream, []eventstore.Event{event("OrderPlaced", OrderPlaced{OrderID: "1"})},
		eventstore.WithCommand(eventstore.CommandRecord{ID: "ext-1", Type: "PlaceOrder"}))
	require.NoError(t, err)
	var calls counter
	d := command.NewDispatcher(store, quiet)
	command.MustRegister(d, placeOrder(store, &calls))
	_, err = d.Dispatch(ctx, command.Envelope{ID: "ext-1", Payload: PlaceOrder{OrderID: "1"}})
	require.ErrorIs(t, err, eventstore.ErrIdempotencyKeyReused)
	require.Zero(t, calls.get())
}

func TestRejectMarksDomainRefusals(t *testing.T) {
	errShipped := errors.New("order already shipped")
	err := command.Reject(errShipped)
	require.ErrorIs(t, err, command.ErrRejected)
	require.ErrorIs(t, err, errShipped)
	var rej *command.RejectedError
	require.ErrorAs(t, err, &rej)
	require.Equal(t, "order already shipped", err.Error())
	require.NoError(t, command.Reject(nil))
}
