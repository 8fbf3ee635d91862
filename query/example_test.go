package query_test

import (
	"context"
	"errors"
	"fmt"
	"net/url"

	"github.com/Masterminds/squirrel"
	"github.com/jackc/pgx/v5"

	"github.com/cairn-es/cairn/internal/pgtest"
	"github.com/cairn-es/cairn/query"
)

// orders is the listing behind GET /orders: what clients may filter and
// sort on, and how much they may ask for at once.
var orders = query.ListSpec{
	Name: "orders",
	Filters: map[string]query.Filter{
		"customer": {Column: "customer"},
		"status":   {Column: "status", Op: query.In},
		"from":     {Column: "created_at", Op: query.GtOrEq, Type: "timestamptz"},
		"to":       {Column: "created_at", Op: query.Lt, Type: "timestamptz"},
	},
	Sorts: map[string]query.Column{
		"created_at": {Name: "created_at", Type: "timestamptz"},
		"total":      {Name: "total_cents", Type: "bigint"},
	},
	TieBreaker:   query.Column{Name: "id", Type: "bigint"},
	DefaultSort:  "-created_at",
	DefaultLimit: 20,
	MaxLimit:     100,
}

type Order struct {
	ID         int64  `db:"id" json:"id"`
	Status     string `db:"status" json:"status"`
	TotalCents int64  `db:"total_cents" json:"total_cents"`
}

// A handler for GET /orders binds the query string to a ListRequest and
// answers with the page; the client follows next_cursor, repeating its
// other parameters, until it is empty.
func ExampleList() {
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, pgtest.URL())
	if err != nil {
		panic(err)
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, `
		CREATE TEMP TABLE orders (id bigint PRIMARY KEY, customer text NOT NULL, status text NOT NULL,
			total_cents bigint NOT NULL, created_at timestamptz NOT NULL);
		INSERT INTO orders SELECT i, 'c' || i % 2, (ARRAY['open', 'paid', 'void'])[1 + i % 3],
			i * 300 % 700, '2024-05-01'::timestamptz + i * interval '1 hour'
		FROM generate_series(1, 9) i`)
	if err != nil {
		panic(err)
	}
	base := query.SQL.Select("id", "status", "total_cents").From("orders")

	params, _ := url.ParseQuery("status=open,paid&sort=-total&limit=2")
	for {
		req, err := query.ParseListRequest(orders, params)
		if err != nil {
			panic(err) // a 400 for the client
		}
		page, err := query.List(ctx, conn, orders, base, req, pgx.RowToStructByName[Order])
		if err != nil {
			panic(err)
		}
		fmt.Println(page.Items, page.NextCursor != "")
		if page.NextCursor == "" {
			break
		}
		params.Set("cursor", page.NextCursor)
	}

	// GET /orders/{id}
	order, err := query.Get(ctx, conn, base.Where(squirrel.Eq{"id": 4}), pgx.RowToStructByName[Order], "order", "4")
	fmt.Println(order, err)
	_, err = query.Get(ctx, conn, base.Where(squirrel.Eq{"id": 40}), pgx.RowToStructByName[Order], "order", "40")
	fmt.Println(errors.Is(err, query.ErrNotFound), err)
	// Output:
	// [{9 open 600} {4 paid 500}] true
	// [{6 open 400} {1 paid 300}] true
	// [{3 open 200} {7 paid 0}] false
	// {4 paid 500} <nil>
	// true order "40" not found
}
