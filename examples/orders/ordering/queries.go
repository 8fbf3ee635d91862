package ordering

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/Masterminds/squirrel"
	"github.com/jackc/pgx/v5"

	"github.com/cairn-es/cairn/query"
)

// GetOrder asks for one order (GET /orders/:id).
type GetOrder struct {
	OrderID string `param:"id"`
}

// OrderView is an order as the read side shows it.
type OrderView struct {
	OrderID    string    `json:"order_id" db:"order_id"`
	CustomerID string    `json:"customer_id" db:"customer_id"`
	Status     Status    `json:"status" db:"status"`
	TotalCents int64     `json:"total_cents" db:"total_cents"`
	ItemCount  int       `json:"item_count" db:"item_count"`
	CreatedAt  time.Time `json:"created_at" db:"created_at"`
	UpdatedAt  time.Time `json:"updated_at" db:"updated_at"`
}

// ListOrders asks for one page of orders (GET /orders), optionally of one
// customer or in one status, newest first unless sort=created_at.
type ListOrders struct {
	Request query.ListRequest
}

// ordersListing is what GET /orders lets a client filter and sort on:
// nothing else reaches the SQL.
var ordersListing = query.ListSpec{
	Name: "orders",
	Filters: map[string]query.Filter{
		"customer_id": {Column: "customer_id", Validate: func(v string) error {
			if !identifier.MatchString(v) {
				return errors.New("must be 1 to 64 of A-Z a-z 0-9 . _ -")
			}
			return nil
		}},
		"status": {Column: "status", Validate: func(v string) error {
			if !Status(v).Valid() {
				return errors.New("must be one of pending, reserved, paid, completed, rejected, cancelled")
			}
			return nil
		}},
	},
	Sorts:       map[string]query.Column{"created_at": {Name: "created_at", Type: "timestamptz"}},
	TieBreaker:  query.Column{Name: "order_id", Type: "text"},
	DefaultSort: "-created_at",
}

// BindRequest implements server.RequestBinder: the query string becomes a
// checked ListRequest, so a bad filter, sort or cursor is a 400 before any
// database work. The cursor's signature needs the service's keys, which a
// binder cannot reach: the handler's query.List verifies it (a forged
// cursor is a 400 all the same).
func (q *ListOrders) BindRequest(_ map[string]string, values url.Values) error {
	req, err := query.ParseListRequest(ordersListing, values)
	q.Request = req
	return err
}

// SalesByDay asks for the sales of each day from From to To, both
// included, as YYYY-MM-DD (GET /stats/sales).
type SalesByDay struct {
	From string `query:"from"`
	To   string `query:"to"`
}

// Validate implements server.Validator: a bad range is a 400.
func (q SalesByDay) Validate() error {
	from, err := time.Parse(time.DateOnly, q.From)
	if err != nil {
		return errors.New("from must be a date, YYYY-MM-DD")
	}
	to, err := time.Parse(time.DateOnly, q.To)
	if err != nil {
		return errors.New("to must be a date, YYYY-MM-DD")
	}
	// PostgreSQL has no year 0 (Go parses at most year 9999, which it has).
	if from.Year() < 1 || to.Year() < 1 {
		return errors.New("from and to must be in year 1 or later")
	}
	if from.After(to) {
		return fmt.Errorf("from (%s) is after to (%s)", q.From, q.To)
	}
	return nil
}

// SalesReport lists the days of a range that had completed orders, in
// order; days without any are left out.
type SalesReport struct {
	Days []DailySales `json:"days"`
}

// DailySales sums the orders completed on one UTC day.
type DailySales struct {
	Day             string `json:"day" db:"day"`
	OrdersCompleted int64  `json:"orders_completed" db:"orders_completed"`
	RevenueCents    int64  `json:"revenue_cents" db:"revenue_cents"`
	ItemsSold       int64  `json:"items_sold" db:"items_sold"`
}

// queries answers from the read models. Tables are qualified with their
// projection's schema, which the projection manager owns.
type queries struct {
	db         query.Querier
	summary    string // the order_summary table, qualified
	salesByDay string // the sales_by_day table, qualified
	// listing is ordersListing with the service's cursor keys, so that
	// every instance of the service accepts the others' cursors.
	listing query.ListSpec
}

func newQueries(db query.Querier, summarySchema, salesSchema string, keys *query.CursorKeys) queries {
	listing := ordersListing
	listing.CursorKeys = keys
	return queries{
		db:         db,
		summary:    pgx.Identifier{summarySchema, OrderSummaryProjection}.Sanitize(),
		salesByDay: pgx.Identifier{salesSchema, SalesByDayProjection}.Sanitize(),
		listing:    listing,
	}
}

func (q queries) orders() squirrel.SelectBuilder {
	return query.SQL.Select("order_id", "customer_id", "status", "total_cents", "item_count", "created_at", "updated_at").
		From(q.summary)
}

func (q queries) getOrder(ctx context.Context, g GetOrder) (OrderView, error) {
	return query.Get(ctx, q.db, q.orders().Where(squirrel.Eq{"order_id": g.OrderID}), scanOrder, "order", g.OrderID)
}

func (q queries) listOrders(ctx context.Context, l ListOrders) (query.Page[OrderView], error) {
	return query.List(ctx, q.db, q.listing, q.orders(), l.Request, scanOrder)
}

func (q queries) salesByDayRange(ctx context.Context, s SalesByDay) (SalesReport, error) {
	sql, args, err := query.SQL.Select("day::text AS day", "orders_completed", "revenue_cents", "items_sold").
		From(q.salesByDay).
		Where("day BETWEEN ?::date AND ?::date", s.From, s.To).
		OrderBy("day").
		ToSql()
	if err != nil {
		return SalesReport{}, err
	}
	rows, err := q.db.Query(ctx, sql, args...)
	if err != nil {
		return SalesReport{}, err
	}
	days, err := pgx.CollectRows(rows, pgx.RowToStructByName[DailySales])
	if err != nil {
		return SalesReport{}, err
	}
	if days == nil {
		days = []DailySales{} // "days": [], not null
	}
	return SalesReport{Days: days}, nil
}

// scanOrder reads an order row, with its times in UTC whatever the
// connection's time zone, so responses do not depend on the server's.
func scanOrder(row pgx.CollectableRow) (OrderView, error) {
	o, err := pgx.RowToStructByName[OrderView](row)
	o.CreatedAt, o.UpdatedAt = o.CreatedAt.UTC(), o.UpdatedAt.UTC()
	return o, err
}
