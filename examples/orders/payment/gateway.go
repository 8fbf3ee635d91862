package payment

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"
)

// Gateway is a payment provider. Charge takes money once per idempotency
// key: a repeated call with the same key returns the first call's outcome
// without charging again. A declined charge is an error matching
// ErrDeclined; any other error leaves the outcome unknown, and the caller
// finds it out by calling again with the same key.
type Gateway interface {
	Charge(ctx context.Context, idempotencyKey string, amountCents int64) (chargeID string, err error)
	Refund(ctx context.Context, chargeID string) error
}

// Gateway errors.
var (
	// ErrDeclined: the provider refused the charge (a final answer).
	ErrDeclined = errors.New("payment: card declined")
	// ErrUnknownCharge: a refund of a charge the provider does not know.
	ErrUnknownCharge = errors.New("payment: unknown charge")
	// ErrKeyReused: a charge under an idempotency key already used for
	// another amount, which real providers refuse too.
	ErrKeyReused = errors.New("payment: idempotency key reused with another amount")
)

// SimulatedGateway is an in-memory Gateway for tests and demos: it declines
// a share of charges at random, takes its time answering, and counts what
// it did. The zero value approves everything at once; set the fields before
// the first call. It is safe for concurrent use.
type SimulatedGateway struct {
	// FailureRate is the probability, from 0 to 1, that a new charge is
	// declined.
	FailureRate float64
	// Latency is how long every call takes, plus a random share of
	// Jitter. A call whose context ends first returns its error without
	// charging or refunding.
	Latency, Jitter time.Duration
	// Seed seeds the random source, so that a run's declines can be
	// reproduced.
	Seed uint64

	mu      sync.Mutex
	rng     *rand.Rand
	byKey   map[string]*KeyStats
	keyOfID map[string]string // charge ID → idempotency key
	next    int               // charges made, for charge IDs
}

// KeyStats is what the gateway did under one idempotency key.
type KeyStats struct {
	// Calls counts Charge calls that reached a decision, replays included.
	Calls int
	// Charged is 1 when the key's charge succeeded (a replay never
	// charges again), Declined 1 when it was declined.
	Charged, Declined int
	// Refunds counts refunds that took effect (at most 1).
	Refunds     int
	AmountCents int64
	ChargeID    string
}

// Totals sums KeyStats over every key.
type Totals struct {
	Calls, Charges, Declines, Refunds int
	ChargedCents, RefundedCents       int64
}

var _ Gateway = (*SimulatedGateway)(nil)

// Charge implements Gateway.
func (g *SimulatedGateway) Charge(ctx context.Context, key string, amountCents int64) (string, error) {
	if err := g.wait(ctx); err != nil {
		return "", err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.init()
	s, seen := g.byKey[key]
	if seen {
		s.Calls++
		switch {
		case s.AmountCents != amountCents:
			return "", fmt.Errorf("%w: key %s", ErrKeyReused, key)
		case s.Declined > 0:
			return "", ErrDeclined
		}
		return s.ChargeID, nil
	}
	s = &KeyStats{Calls: 1, AmountCents: amountCents}
	g.byKey[key] = s
	if g.rng.Float64() < g.FailureRate {
		s.Declined = 1
		return "", ErrDeclined
	}
	g.next++
	s.Charged, s.ChargeID = 1, fmt.Sprintf("ch_%06d", g.next)
	g.keyOfID[s.ChargeID] = key
	return s.ChargeID, nil
}

// Refund implements Gateway. Refunding a refunded charge does nothing and
// succeeds, so that a retried refund is safe.
func (g *SimulatedGateway) Refund(ctx context.Context, chargeID string) error {
	if err := g.wait(ctx); err != nil {
		return err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.init()
	key, ok := g.keyOfID[chargeID]
	if !ok {
		return fmt.Errorf("%w: %s", ErrUnknownCharge, chargeID)
	}
	g.byKey[key].Refunds = 1
	return nil
}

// Charges returns a copy of what the gateway did, by idempotency key.
func (g *SimulatedGateway) Charges() map[string]KeyStats {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make(map[string]KeyStats, len(g.byKey))
	for k, s := range g.byKey {
		out[k] = *s
	}
	return out
}

// Totals returns the sums over every key.
func (g *SimulatedGateway) Totals() Totals {
	var t Totals
	for _, s := range g.Charges() {
		t.Calls += s.Calls
		t.Charges += s.Charged
		t.Declines += s.Declined
		t.Refunds += s.Refunds
		t.ChargedCents += int64(s.Charged) * s.AmountCents
		t.RefundedCents += int64(s.Refunds) * s.AmountCents
	}
	return t
}

// init makes the maps and the random source on first use, so that the zero
// value works. It runs under g.mu.
func (g *SimulatedGateway) init() {
	if g.rng == nil {
		g.rng = rand.New(rand.NewPCG(g.Seed, g.Seed^0x9e3779b97f4a7c15))
		g.byKey = map[string]*KeyStats{}
		g.keyOfID = map[string]string{}
	}
}

// wait takes the call's latency, giving up when ctx ends.
func (g *SimulatedGateway) wait(ctx context.Context) error {
	d := g.Latency
	if g.Jitter > 0 {
		g.mu.Lock()
		g.init()
		d += time.Duration(g.rng.Int64N(int64(g.Jitter)))
		g.mu.Unlock()
	}
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
