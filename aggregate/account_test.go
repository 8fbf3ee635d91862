package aggregate_test

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/cairn-es/cairn/aggregate"
	"github.com/cairn-es/cairn/eventstore"
)

// The test domain: a bank account that cannot go overdrawn.

type accountOpened struct {
	Owner string `json:"owner"`
}

type deposited struct {
	AmountCents int64 `json:"amount_cents"`
}

type withdrawn struct {
	AmountCents int64 `json:"amount_cents"`
}

var (
	errAlreadyOpen     = errors.New("account already open")
	errNotOpen         = errors.New("account not open")
	errInsufficient    = errors.New("insufficient funds")
	errNonPositiveCash = errors.New("amount must be positive")
)

type account struct {
	aggregate.Base
	Open         bool   `json:"open"`
	Owner        string `json:"owner"`
	BalanceCents int64  `json:"balance_cents"`
	// Applied counts Apply calls, to prove what a load replays. It is not
	// state, so it stays out of snapshots.
	Applied int `json:"-"`
}

func newAccount() *account { return &account{} }

func (a *account) Apply(event any) {
	a.Applied++
	switch e := event.(type) {
	case accountOpened:
		a.Open = true
		a.Owner = e.Owner
	case deposited:
		a.BalanceCents += e.AmountCents
	case withdrawn:
		a.BalanceCents -= e.AmountCents
	}
}

func (a *account) OpenAccount(owner string) error {
	if a.Open {
		return errAlreadyOpen
	}
	aggregate.Record(a, accountOpened{Owner: owner})
	return nil
}

func (a *account) Deposit(cents int64) error {
	switch {
	case !a.Open:
		return errNotOpen
	case cents <= 0:
		return errNonPositiveCash
	}
	aggregate.Record(a, deposited{AmountCents: cents})
	return nil
}

func (a *account) Withdraw(cents int64) error {
	switch {
	case !a.Open:
		return errNotOpen
	case cents <= 0:
		return errNonPositiveCash
	case cents > a.BalanceCents:
		return errInsufficient
	}
	aggregate.Record(a, withdrawn{AmountCents: cents})
	return nil
}

func accountRegistry(t testing.TB) *eventstore.Registry {
	t.Helper()
	r := eventstore.NewRegistry()
	require.NoError(t, eventstore.Register[accountOpened](r, "AccountOpened"))
	require.NoError(t, eventstore.Register[deposited](r, "Deposited"))
	require.NoError(t, eventstore.Register[withdrawn](r, "Withdrawn"))
	return r
}

// countingStore records the ReadStream calls and appends that reach the
// store underneath.
type countingStore struct {
	aggregate.Store
	mu      sync.Mutex
	reads   []eventstore.ReadStreamOptions
	appends int
}

func (s *countingStore) ReadStream(ctx context.Context, streamID string, opts eventstore.ReadStreamOptions) ([]eventstore.RecordedEvent, error) {
	s.mu.Lock()
	s.reads = append(s.reads, opts)
	s.mu.Unlock()
	return s.Store.ReadStream(ctx, streamID, opts)
}

func (s *countingStore) Append(ctx context.Context, streamID string, expected eventstore.ExpectedVersion, events []eventstore.Event, opts ...eventstore.AppendOption) (eventstore.AppendResult, error) {
	s.mu.Lock()
	s.appends++
	s.mu.Unlock()
	return s.Store.Append(ctx, streamID, expected, events, opts...)
}

func (s *countingStore) takeReads() []eventstore.ReadStreamOptions {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.reads
	s.reads = nil
	return r
}
