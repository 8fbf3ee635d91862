package integration_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cairn-es/cairn/command"
	"github.com/cairn-es/cairn/eventstore"
	"github.com/cairn-es/cairn/eventstore/memory"
	"github.com/cairn-es/cairn/integration"
	"github.com/cairn-es/cairn/retry"
)

type ScheduleShipment struct {
	OrderID string `json:"order_id"`
}

type orderPaid struct {
	OrderID string `json:"order_id"`
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// inboxOver is an inbox named name over an in-memory store whose
// ScheduleShipment handler appends one event per order, or refuses order
// "refused" as a domain rule, or fails for order "flaky" while flaky
// returns an error.
func inboxOver(t *testing.T, store *memory.Store, name string, flaky func() error) *integration.Inbox {
	t.Helper()
	d := command.NewDispatcher(store, command.Config{Logger: quiet, Retry: retry.Policy{MaxAttempts: 1}})
	command.MustRegister(d, func(ctx context.Context, c ScheduleShipment) (eventstore.AppendResult, error) {
		switch {
		case c.OrderID == "refused":
			return eventstore.AppendResult{}, command.Reject(errors.New("no such order"))
		case c.OrderID == "flaky" && flaky != nil:
			if err := flaky(); err != nil {
				return eventstore.AppendResult{}, err
			}
		}
		events := []eventstore.Event{{Type: "ShipmentScheduled", Data: json.RawMessage(`{}`)}}
		causation, _ := eventstore.CausationFrom(ctx)
		return store.Append(ctx, "shipment-"+c.OrderID, eventstore.Any, events, causation.Stamp(events)...)
	})
	in, err := integration.NewInbox(name, d, integration.InboxConfig{})
	require.NoError(t, err)
	integration.Handle(in, "OrderPaid", func(_ context.Context, m orderPaid, _ integration.Message) (any, error) {
		if m.OrderID == "" {
			return nil, nil // nothing to do
		}
		return ScheduleShipment(m), nil
	})
	return in
}

func paid(id, orderID string) integration.Message {
	return integration.Message{
		Type: "OrderPaid", Version: 1, ID: id, CorrelationID: "request-1", CausationID: id,
		Data: json.RawMessage(`{"order_id":"` + orderID + `"}`),
	}
}

// The command carries an ID derived from the inbox and the message, the
// message's correlation and the message as its cause; a second delivery
// is answered from the command log.
func TestReceiveDispatchesOnceWithDerivedIDs(t *testing.T) {
	ctx := context.Background()
	store := memory.New(memory.Config{})
	in := inboxOver(t, store, "shipping", nil)

	o, res, err := in.Receive(ctx, paid("evt-1", "o-1"))
	require.NoError(t, err)
	require.Equal(t, integration.Handled, o)
	require.Equal(t, integration.CommandID("shipping", "evt-1"), res.CommandID)

	o, res2, err := in.Receive(ctx, paid("evt-1", "o-1"))
	require.NoError(t, err)
	require.Equal(t, integration.Duplicate, o)
	require.Equal(t, res.Position, res2.Position)

	events, err := store.ReadStream(ctx, "shipment-o-1", eventstore.ReadStreamOptions{})
	require.NoError(t, err)
	require.Len(t, events, 1, "handled once")
	md := events[0].Metadata
	require.Equal(t, "request-1", md.CorrelationID)
	require.Equal(t, res.CommandID, md.CommandID)
	require.Equal(t, "evt-1", md.Extra["caused_by"], "the event names the message (the sending service's event) that caused it")

	// Another inbox receiving the same message sends a command of its own.
	other := inboxOver(t, memory.New(memory.Config{}), "billing", nil)
	_, res3, err := other.Receive(ctx, paid("evt-1", "o-1"))
	require.NoError(t, err)
	require.NotEqual(t, res.CommandID, res3.CommandID)
}

func TestReceiveOutcomes(t *testing.T) {
	ctx := context.Background()
	flakyErr := errors.New("database restarting")
	failing := true
	in := inboxOver(t, memory.New(memory.Config{}), "shipping", func() error {
		if failing {
			return flakyErr
		}
		return nil
	})
	integration.Handle(in, "Exploding", func(context.Context, orderPaid, integration.Message) (any, error) {
		panic("boom")
	})
	integration.Handle(in, "Unregistered", func(context.Context, orderPaid, integration.Message) (any, error) {
		return struct{ X int }{1}, nil
	})

	cases := []struct {
		name string
		msg  integration.Message
		want integration.Outcome
		is   error
	}{
		{"rejected by a domain rule", paid("e-2", "refused"), integration.Rejected, command.ErrRejected},
		{"no handler", integration.Message{Type: "Unknown", ID: "e-3", Data: json.RawMessage(`{}`)}, integration.Ignored, integration.ErrNoHandler},
		{"handler returns no command", paid("e-4", ""), integration.Ignored, nil},
		{"data that does not decode", integration.Message{Type: "OrderPaid", ID: "e-5", Data: json.RawMessage(`[1,2]`)}, integration.DeadLetter, nil},
		{"a command no handler takes", integration.Message{Type: "Unregistered", ID: "e-6", Data: json.RawMessage(`{}`)}, integration.DeadLetter, command.ErrUnknownCommand},
		{"a transient failure", paid("e-7", "flaky"), integration.Retry, flakyErr},
		{"a panicking handler", integration.Message{Type: "Exploding", ID: "e-8", Data: json.RawMessage(`{}`)}, integration.Retry, integration.ErrPanic},
		{"no message ID", integration.Message{Type: "OrderPaid", Data: json.RawMessage(`{}`)}, integration.DeadLetter, integration.ErrInvalidMessage},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o, _, err := in.Receive(ctx, c.msg)
			require.Equal(t, c.want, o, "error: %v", err)
			if c.is != nil {
				require.ErrorIs(t, err, c.is)
			}
		})
	}

	// The flaky message succeeds on a later delivery, once.
	failing = false
	o, _, err := in.Receive(ctx, paid("e-7", "flaky"))
	require.NoError(t, err)
	require.Equal(t, integration.Handled, o)

	// A context that ends is a retry, whatever the handler said.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	o, _, err = in.Receive(cctx, paid("e-9", "o-9"))
	require.Error(t, err)
	require.Equal(t, integration.Retry, o)
}

func TestDecodeFillsWhatAForeignMessageLacks(t *testing.T) {
	m := integration.Decode(integration.Envelope{
		ID: "nats-id-1", Subject: "legacy.orders.paid", Data: []byte(`{"a":1}`),
		Headers: map[string]string{"X-Tenant": "acme", "Nats-Msg-Id": "nats-id-1"},
	})
	require.Equal(t, "legacy.orders.paid", m.Type)
	require.Equal(t, "legacy.orders.paid", m.Key)
	require.Equal(t, 1, m.Version)
	require.Equal(t, "nats-id-1", m.ID)
	require.Equal(t, map[string]string{"X-Tenant": "acme"}, m.Headers)
	require.JSONEq(t, `{"a":1}`, string(m.Data.(json.RawMessage)))

	at := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	m = integration.Decode(integration.Envelope{ID: "x", Subject: "s", Headers: map[string]string{
		integration.HeaderMessageID: "evt", integration.HeaderType: "OrderPaid", integration.HeaderVersion: "3",
		integration.HeaderKey: "order-1", integration.HeaderCorrelationID: "c", integration.HeaderCausationID: "evt",
		integration.HeaderOccurredAt: at.Format(time.RFC3339Nano), integration.HeaderContentType: integration.ContentType,
	}})
	require.Equal(t, integration.Message{
		Type: "OrderPaid", Version: 3, Key: "order-1", Subject: "s", Data: json.RawMessage(nil),
		ID: "evt", CorrelationID: "c", CausationID: "evt", OccurredAt: at,
	}, m)
}

func TestValidSubject(t *testing.T) {
	for _, s := range []string{"orders.OrderPaid", "a", "a.b-c_d.e"} {
		require.NoError(t, integration.ValidSubject(s), s)
	}
	for _, s := range []string{"", ".a", "a.", "a..b", "a.*", "a.>", "a b", "a.\tb"} {
		require.ErrorIs(t, integration.ValidSubject(s), integration.ErrInvalidMessage, s)
	}
}

func TestCommandIDIsStableAndPerInbox(t *testing.T) {
	a := integration.CommandID("shipping", "0190-evt")
	require.Equal(t, a, integration.CommandID("shipping", "0190-evt"))
	require.NotEqual(t, a, integration.CommandID("billing", "0190-evt"))
	require.NotEqual(t, a, integration.CommandID("shipping", "0191-evt"))
	// The separator keeps the two parts apart.
	require.NotEqual(t, integration.CommandID("ab", "c"), integration.CommandID("a", "bc"))
}
