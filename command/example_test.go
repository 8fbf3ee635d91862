package command_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/cairn-es/cairn/command"
	"github.com/cairn-es/cairn/eventstore"
	"github.com/cairn-es/cairn/eventstore/memory"
	"github.com/cairn-es/cairn/retry"
)

// OpenAccount is a command: verb-noun, named after its Go type.
type OpenAccount struct {
	AccountID string `json:"account_id"`
	Owner     string `json:"owner"`
}

// Validate is run by the Validation middleware before the handler.
func (c OpenAccount) Validate() error {
	if c.Owner == "" {
		return errors.New("owner is required")
	}
	return nil
}

func Example() {
	store := memory.New(memory.Config{})
	d := command.NewDispatcher(store, command.Config{
		Logger:  slog.New(slog.NewTextHandler(io.Discard, nil)),
		Timeout: 5 * time.Second,
		Retry:   retry.Policy{MaxAttempts: 3, BaseDelay: 10 * time.Millisecond, MaxDelay: 100 * time.Millisecond},
	})

	// One handler per command type, registered at start-up. A real handler
	// loads an aggregate, decides and saves through a repository; the
	// repository stamps the events with the causation the dispatcher put in
	// ctx, as done by hand here.
	command.MustRegister(d, func(ctx context.Context, cmd OpenAccount) (eventstore.AppendResult, error) {
		data, _ := json.Marshal(cmd)
		events := []eventstore.Event{{Type: "AccountOpened", Data: data}}
		causation, _ := eventstore.CausationFrom(ctx)
		return store.Append(ctx, "account-"+cmd.AccountID, eventstore.NoStream, events, causation.Stamp(events)...)
	})

	ctx := context.Background()
	cmd := command.Envelope{
		ID:            "open-acc-1", // the client's idempotency key
		CorrelationID: "request-123",
		Payload:       OpenAccount{AccountID: "1", Owner: "Ann"},
	}
	res, err := d.Dispatch(ctx, cmd)
	fmt.Println(res.StreamID, res.Version, res.Duplicate, err)

	// A redelivery returns the first result without running the handler.
	res, err = d.Dispatch(ctx, cmd)
	fmt.Println(res.StreamID, res.Version, res.Duplicate, err)

	// The same key with a different payload is refused.
	cmd.Payload = OpenAccount{AccountID: "1", Owner: "Bob"}
	_, err = d.Dispatch(ctx, cmd)
	fmt.Println(errors.Is(err, eventstore.ErrIdempotencyKeyReused))

	// Invalid commands never reach the handler.
	_, err = d.Dispatch(ctx, OpenAccount{AccountID: "2"})
	fmt.Println(errors.Is(err, command.ErrInvalidCommand), err)

	evs, _ := store.ReadStream(ctx, "account-1", eventstore.ReadStreamOptions{})
	m := evs[0].Metadata
	fmt.Println(len(evs), m.CorrelationID, m.CausationID)

	// Output:
	// account-1 1 false <nil>
	// account-1 1 true <nil>
	// true
	// true command: invalid OpenAccount: owner is required
	// 1 request-123 open-acc-1
}
