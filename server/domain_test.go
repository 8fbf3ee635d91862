package server_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/cairn-es/cairn/command"
	"github.com/cairn-es/cairn/eventstore"
	"github.com/cairn-es/cairn/query"
)

// A small order domain: commands append to "order-<id>" streams, one
// projection keeps an orders table, queries read it.

var orderIDPattern = regexp.MustCompile(`^[a-z0-9-]{1,40}$`)

// PlaceOrder creates an order.
type PlaceOrder struct {
	OrderID string `json:"order_id"`
	Amount  int64  `json:"amount"`
	Note    string `json:"note,omitempty"`
}

func (c PlaceOrder) Validate() error {
	if !orderIDPattern.MatchString(c.OrderID) {
		return errors.New("order_id must be 1 to 40 of a-z, 0-9 and -")
	}
	if c.Amount <= 0 {
		return errors.New("amount must be positive")
	}
	return nil
}

// AmendOrder changes an order's amount, expecting the client's version.
type AmendOrder struct {
	OrderID         string `json:"-" param:"id"`
	Amount          int64  `json:"amount"`
	ExpectedVersion int64  `json:"expected_version"`
}

func (c AmendOrder) Validate() error {
	if !orderIDPattern.MatchString(c.OrderID) {
		return errors.New("the order ID must be 1 to 40 of a-z, 0-9 and -")
	}
	return nil
}

// CancelOrder takes its ID from the path itself and has no body.
type CancelOrder struct {
	OrderID string `json:"-"`
}

func (c *CancelOrder) BindPath(path map[string]string) error {
	if !orderIDPattern.MatchString(path["id"]) {
		return errors.New("the order ID must be 1 to 40 of a-z, 0-9 and -")
	}
	c.OrderID = path["id"]
	return nil
}

type orderEvent struct {
	OrderID string `json:"order_id"`
	Amount  int64  `json:"amount"`
	Note    string `json:"note,omitempty"`
}

func encode(typ string, v any) eventstore.Event {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return eventstore.Event{Type: typ, Data: b}
}

// save appends like a repository: stamped with the command's causation.
func save(ctx context.Context, store eventstore.Appender, stream string, expected eventstore.ExpectedVersion, events ...eventstore.Event) (eventstore.AppendResult, error) {
	var opts []eventstore.AppendOption
	if c, ok := eventstore.CausationFrom(ctx); ok {
		opts = c.Stamp(events)
	}
	return store.Append(ctx, stream, expected, events, opts...)
}

func registerCommands(d *command.Dispatcher, store eventstore.Store) {
	command.MustRegister(d, func(ctx context.Context, c PlaceOrder) (eventstore.AppendResult, error) {
		if c.Amount > 10_000 {
			return eventstore.AppendResult{}, command.Reject(errors.New("amount exceeds the credit limit of 10000"))
		}
		if _, err := store.ReadStream(ctx, "order-"+c.OrderID, eventstore.ReadStreamOptions{Limit: 1}); err == nil {
			return eventstore.AppendResult{}, command.Reject(fmt.Errorf("order %s already exists", c.OrderID))
		}
		return save(ctx, store, "order-"+c.OrderID, eventstore.NoStream, encode("OrderPlaced", orderEvent(c)))
	})
	command.MustRegister(d, func(ctx context.Context, c AmendOrder) (eventstore.AppendResult, error) {
		return save(ctx, store, "order-"+c.OrderID, eventstore.Exact(c.ExpectedVersion), encode("OrderAmended", orderEvent{OrderID: c.OrderID, Amount: c.Amount}))
	})
	command.MustRegister(d, func(ctx context.Context, c CancelOrder) (eventstore.AppendResult, error) {
		if _, err := store.ReadStream(ctx, "order-"+c.OrderID, eventstore.ReadStreamOptions{Limit: 1}); err != nil {
			return eventstore.AppendResult{}, err // not found: 404
		}
		return save(ctx, store, "order-"+c.OrderID, eventstore.Any, encode("OrderCancelled", orderEvent{OrderID: c.OrderID}))
	})
}

// ordersProjection keeps one row per order. An OrderPlaced with amount 6666
// is poison: applying it fails.
type ordersProjection struct{ name string }

func (p *ordersProjection) Name() string { return p.name }
func (p *ordersProjection) Version() int { return 1 }
func (p *ordersProjection) EventTypes() []string {
	return []string{"OrderAmended", "OrderCancelled", "OrderPlaced"}
}
func (p *ordersProjection) Setup(ctx context.Context, tx pgx.Tx) error {
	_, err := tx.Exec(ctx, `CREATE TABLE orders (order_id text PRIMARY KEY, amount bigint NOT NULL, status text NOT NULL, version bigint NOT NULL)`)
	return err
}
func (p *ordersProjection) Apply(ctx context.Context, tx pgx.Tx, e eventstore.RecordedEvent) error {
	var d orderEvent
	if err := json.Unmarshal(e.Data, &d); err != nil {
		return err
	}
	var err error
	switch e.Type {
	case "OrderPlaced":
		if d.Amount == 6666 {
			return errors.New("poison order")
		}
		_, err = tx.Exec(ctx, `INSERT INTO orders VALUES ($1, $2, 'placed', $3)`, d.OrderID, d.Amount, e.Version)
	case "OrderAmended":
		_, err = tx.Exec(ctx, `UPDATE orders SET amount = $2, version = $3 WHERE order_id = $1`, d.OrderID, d.Amount, e.Version)
	case "OrderCancelled":
		_, err = tx.Exec(ctx, `UPDATE orders SET status = 'cancelled', version = $2 WHERE order_id = $1`, d.OrderID, e.Version)
	}
	return err
}

// Order is the read model's row.
type Order struct {
	OrderID string `json:"order_id"`
	Amount  int64  `json:"amount"`
	Status  string `json:"status"`
	Version int64  `json:"version"`
}

// GetOrder binds from tags.
type GetOrder struct {
	ID      string `param:"id"`
	Verbose bool   `query:"verbose"`
}

// ListOrders binds itself from allow-listed parameters.
type ListOrders struct {
	MinAmount int64
	Limit     int
}

func (q *ListOrders) BindRequest(_ map[string]string, values url.Values) error {
	q.Limit = 50
	for k, vs := range values {
		if len(vs) != 1 {
			return fmt.Errorf("%w: parameter %q given more than once", query.ErrInvalidQuery, k)
		}
		switch k {
		case "min_amount":
			n, err := strconv.ParseInt(vs[0], 10, 64)
			if err != nil {
				return fmt.Errorf("%w: min_amount must be an integer", query.ErrInvalidQuery)
			}
			q.MinAmount = n
		case "limit":
			n, err := strconv.Atoi(vs[0])
			if err != nil {
				return fmt.Errorf("%w: limit must be an integer", query.ErrInvalidQuery)
			}
			q.Limit = n
		default:
			return fmt.Errorf("%w: unknown parameter %q", query.ErrInvalidQuery, k)
		}
	}
	return nil
}

func (q ListOrders) Validate() error {
	if q.Limit < 1 || q.Limit > 100 {
		return errors.New("limit must be between 1 and 100")
	}
	return nil
}

// OrderEvents reads the event store, no projection.
type OrderEvents struct {
	ID string `param:"id"`
}

// Broken reaches a database that is not there.
type Broken struct{}

// Unbuilt reads a read model that was never built.
type Unbuilt struct{}

// Buggy fails with an error full of internals.
type Buggy struct {
	Panic bool `query:"panic"`
}

// Slow takes its time.
type Slow struct {
	Millis int `query:"ms"`
}

func registerQueries(bus *query.Bus, pool *pgxpool.Pool, store eventstore.Store, model string, started chan<- struct{}) {
	table := pgx.Identifier{model, "orders"}.Sanitize()
	query.MustRegister(bus, query.HandlerFunc[GetOrder, Order](func(ctx context.Context, q GetOrder) (Order, error) {
		var o Order
		err := pool.QueryRow(ctx, "SELECT order_id, amount, status, version FROM "+table+" WHERE order_id = $1", q.ID).Scan(&o.OrderID, &o.Amount, &o.Status, &o.Version)
		if errors.Is(err, pgx.ErrNoRows) {
			return o, query.NotFound("order", q.ID)
		}
		return o, err
	}), query.ReadsFrom(model))
	query.MustRegister(bus, query.HandlerFunc[ListOrders, []Order](func(ctx context.Context, q ListOrders) ([]Order, error) {
		rows, err := pool.Query(ctx, "SELECT order_id, amount, status, version FROM "+table+" WHERE amount >= $1 ORDER BY order_id LIMIT $2", q.MinAmount, q.Limit)
		if err != nil {
			return nil, err
		}
		return pgx.CollectRows(rows, func(r pgx.CollectableRow) (Order, error) {
			var o Order
			return o, r.Scan(&o.OrderID, &o.Amount, &o.Status, &o.Version)
		})
	}), query.ReadsFrom(model))
	query.MustRegister(bus, query.HandlerFunc[OrderEvents, []string](func(ctx context.Context, q OrderEvents) ([]string, error) {
		evs, err := store.ReadStream(ctx, "order-"+q.ID, eventstore.ReadStreamOptions{})
		if errors.Is(err, eventstore.ErrStreamNotFound) {
			return nil, query.NotFound("order", q.ID)
		}
		out := make([]string, 0, len(evs))
		for _, e := range evs {
			out = append(out, e.Type)
		}
		return out, err
	}))
	query.MustRegister(bus, query.HandlerFunc[Broken, string](func(ctx context.Context, _ Broken) (string, error) {
		conn, err := pgx.Connect(ctx, "postgres://postgres@127.0.0.1:1/postgres?sslmode=disable&connect_timeout=2")
		if err != nil {
			return "", fmt.Errorf("loading: %w", err)
		}
		_ = conn.Close(ctx)
		return "unreachable", nil
	}))
	query.MustRegister(bus, query.HandlerFunc[Unbuilt, string](func(ctx context.Context, _ Unbuilt) (string, error) {
		var s string
		err := pool.QueryRow(ctx, "SELECT status FROM "+pgx.Identifier{model + "_never_built", "orders"}.Sanitize()).Scan(&s)
		return s, err
	}))
	query.MustRegister(bus, query.HandlerFunc[Buggy, string](func(ctx context.Context, q Buggy) (string, error) {
		if q.Panic {
			panic("boom: SELECT secret FROM users")
		}
		return "", errors.New(`ERROR: relation "secret_table" does not exist (SQLSTATE 42P01) in SELECT * FROM secret_table`)
	}))
	query.MustRegister(bus, query.HandlerFunc[Slow, string](func(ctx context.Context, q Slow) (string, error) {
		if started != nil {
			started <- struct{}{}
		}
		select {
		case <-time.After(time.Duration(q.Millis) * time.Millisecond):
			return "done", nil
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}))
}
