package payment

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
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
	// ErrNoDatabase: a SimulatedGateway used before UseDatabase (the
	// payment Module calls it).
	ErrNoDatabase = errors.New("payment: the simulated gateway has no database; register it in a payment.Module or call UseDatabase")
)

// GatewaySchema names the PostgreSQL schema of the simulated gateway's
// charges (after Module.Prefix).
const GatewaySchema = "payment_gateway"

// SimulatedGateway is a Gateway for tests and demos: it declines a share of
// charges at random, takes its time answering, and keeps what it did in a
// table of its own in PostgreSQL (charges, in the schema UseDatabase
// names), as a real provider keeps it on its side. So its charges outlive
// the process: a charge made by a process that exited is replayed, found
// and refunded by the next one, and charge IDs (random UUIDs) are unique
// across processes, so a refund never lands on another order's charge.
//
// The zero value approves everything at once; set the fields before the
// first call. The payment Module gives it its database. It is safe for
// concurrent use, by many instances and processes on the same table.
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

	mu  sync.Mutex
	rng *rand.Rand

	dbMu  sync.Mutex // guards the fields below; held while creating the table
	pool  *pgxpool.Pool
	table string // the sanitized schema.charges
	ready bool   // the table exists
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

// UseDatabase makes the gateway keep its charges in schema's charges table
// on pool, created on first use (or by Setup).
func (g *SimulatedGateway) UseDatabase(pool *pgxpool.Pool, schema string) {
	g.dbMu.Lock()
	defer g.dbMu.Unlock()
	table := pgx.Identifier{schema, "charges"}.Sanitize()
	if g.pool != pool || g.table != table {
		g.pool, g.table, g.ready = pool, table, false
	}
}

// Setup creates the gateway's schema and table unless they exist. Charge
// and Refund call it on first use; call it to fail early instead.
func (g *SimulatedGateway) Setup(ctx context.Context) error {
	_, _, err := g.db(ctx)
	return err
}

// db returns the pool and table, creating the table once.
func (g *SimulatedGateway) db(ctx context.Context) (*pgxpool.Pool, string, error) {
	g.dbMu.Lock()
	defer g.dbMu.Unlock()
	if g.pool == nil {
		return nil, "", ErrNoDatabase
	}
	if !g.ready {
		if err := createTable(ctx, g.pool, g.table); err != nil {
			return nil, "", fmt.Errorf("payment: creating the simulated gateway's table %s: %w", g.table, err)
		}
		g.ready = true
	}
	return g.pool, g.table, nil
}

// createTable creates table and its schema under an advisory lock, since
// IF NOT EXISTS alone races between processes starting together.
func createTable(ctx context.Context, pool *pgxpool.Pool, table string) error {
	return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext('cairn payment gateway ' || $1))`, table); err != nil {
			return err
		}
		var schema string
		if err := tx.QueryRow(ctx, `SELECT (parse_ident($1))[1]`, table).Scan(&schema); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `CREATE SCHEMA IF NOT EXISTS `+pgx.Identifier{schema}.Sanitize()); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS `+table+` (
			idempotency_key text PRIMARY KEY,
			charge_id       text UNIQUE, -- NULL for a decline
			amount_cents    bigint NOT NULL,
			declined        boolean NOT NULL,
			refunded        boolean NOT NULL DEFAULT false,
			calls           integer NOT NULL DEFAULT 1,
			created_at      timestamptz NOT NULL DEFAULT now(),
			refunded_at     timestamptz)`)
		return err
	})
}

// Charge implements Gateway. The first call under a key decides; the
// insert that records it makes concurrent first calls, in any process,
// agree on one outcome.
func (g *SimulatedGateway) Charge(ctx context.Context, key string, amountCents int64) (string, error) {
	if err := g.wait(ctx); err != nil {
		return "", err
	}
	pool, table, err := g.db(ctx)
	if err != nil {
		return "", err
	}
	declined := g.decline()
	var newID *string
	if !declined {
		id := "ch_" + uuid.NewString()
		newID = &id
	}
	var chargeID *string
	var storedCents int64
	err = pool.QueryRow(ctx, `INSERT INTO `+table+` AS c (idempotency_key, charge_id, amount_cents, declined)
		VALUES ($1, $2, $3, $4)
		ON CONFLICT (idempotency_key) DO UPDATE SET calls = c.calls + 1
		RETURNING c.charge_id, c.amount_cents, c.declined`, key, newID, amountCents, declined).
		Scan(&chargeID, &storedCents, &declined)
	switch {
	case err != nil:
		return "", fmt.Errorf("payment: simulated gateway: %w", err)
	case storedCents != amountCents:
		return "", fmt.Errorf("%w: key %s", ErrKeyReused, key)
	case declined:
		return "", ErrDeclined
	}
	return *chargeID, nil
}

// Refund implements Gateway. Refunding a refunded charge does nothing and
// succeeds, so that a retried refund is safe.
func (g *SimulatedGateway) Refund(ctx context.Context, chargeID string) error {
	if err := g.wait(ctx); err != nil {
		return err
	}
	pool, table, err := g.db(ctx)
	if err != nil {
		return err
	}
	tag, err := pool.Exec(ctx, `UPDATE `+table+`
		SET refunded = true, refunded_at = coalesce(refunded_at, now())
		WHERE charge_id = $1`, chargeID)
	if err != nil {
		return fmt.Errorf("payment: simulated gateway: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("%w: %s", ErrUnknownCharge, chargeID)
	}
	return nil
}

// ChargesContext returns what the gateway's table holds (whichever process
// did it), by idempotency key; with keys, only theirs.
func (g *SimulatedGateway) ChargesContext(ctx context.Context, keys ...string) (map[string]KeyStats, error) {
	pool, table, err := g.db(ctx)
	if err != nil {
		return nil, err
	}
	if len(keys) == 0 {
		keys = nil // NULL: every key
	}
	rows, err := pool.Query(ctx, `SELECT idempotency_key, calls, declined, refunded, amount_cents, coalesce(charge_id, '')
		FROM `+table+` WHERE $1::text[] IS NULL OR idempotency_key = ANY($1)`, keys)
	if err != nil {
		return nil, fmt.Errorf("payment: reading the simulated gateway's charges: %w", err)
	}
	out := map[string]KeyStats{}
	var key string
	var s KeyStats
	var declined, refunded bool
	_, err = pgx.ForEachRow(rows, []any{&key, &s.Calls, &declined, &refunded, &s.AmountCents, &s.ChargeID}, func() error {
		s.Charged, s.Declined, s.Refunds = b2i(!declined), b2i(declined), b2i(refunded)
		out[key] = s
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("payment: reading the simulated gateway's charges: %w", err)
	}
	return out, nil
}

// TotalsContext sums ChargesContext(ctx, keys...).
func (g *SimulatedGateway) TotalsContext(ctx context.Context, keys ...string) (Totals, error) {
	all, err := g.ChargesContext(ctx, keys...)
	if err != nil {
		return Totals{}, err
	}
	var t Totals
	for _, s := range all {
		t.Calls += s.Calls
		t.Charges += s.Charged
		t.Declines += s.Declined
		t.Refunds += s.Refunds
		t.ChargedCents += int64(s.Charged) * s.AmountCents
		t.RefundedCents += int64(s.Refunds) * s.AmountCents
	}
	return t, nil
}

// Charges is ChargesContext for tests and demos: it panics when the table
// cannot be read, so that a check never passes on an empty answer.
func (g *SimulatedGateway) Charges() map[string]KeyStats {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := g.ChargesContext(ctx)
	if err != nil {
		panic(err)
	}
	return out
}

// Totals is TotalsContext for tests and demos; it panics like Charges.
func (g *SimulatedGateway) Totals() Totals {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	t, err := g.TotalsContext(ctx)
	if err != nil {
		panic(err)
	}
	return t
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// decline draws whether a new charge is declined.
func (g *SimulatedGateway) decline() bool {
	if g.FailureRate <= 0 {
		return false
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.random().Float64() < g.FailureRate
}

// random returns the random source, made on first use so that the zero
// value works. It runs under g.mu.
func (g *SimulatedGateway) random() *rand.Rand {
	if g.rng == nil {
		g.rng = rand.New(rand.NewPCG(g.Seed, g.Seed^0x9e3779b97f4a7c15))
	}
	return g.rng
}

// wait takes the call's latency, giving up when ctx ends.
func (g *SimulatedGateway) wait(ctx context.Context) error {
	d := g.Latency
	if g.Jitter > 0 {
		g.mu.Lock()
		d += time.Duration(g.random().Int64N(int64(g.Jitter)))
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
