package ordering_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/cairn-es/cairn/app"
	"github.com/cairn-es/cairn/command"
	"github.com/cairn-es/cairn/eventstore"
	"github.com/cairn-es/cairn/examples/orders/ordering"
	"github.com/cairn-es/cairn/internal/pgtest"
	"github.com/cairn-es/cairn/server"
)

// env is the ordering context assembled as a service on a schema of its
// own, its projections running, its routes served in-process.
type env struct {
	t *testing.T
	d *app.Deps
}

func newEnv(t *testing.T) *env {
	t.Helper()
	pool := pgtest.Pool(t, 10)
	return newEnvOn(t, pool, pgtest.Schema(t, pool), fmt.Sprintf("t%x_", pgtest.Suffix()), nil)
}

// newEnvOn assembles the context on schema with its projections named
// with prefix, configured by configure, and runs its projections.
func newEnvOn(t *testing.T, pool *pgxpool.Pool, schema, prefix string, configure func(*app.Config)) *env {
	t.Helper()
	// Cleanups run last first: the read model is dropped after every
	// instance has stopped.
	pgtest.DropModels(t, pool, prefix+ordering.OrderSummaryProjection, prefix+ordering.SalesByDayProjection)
	ctx, cancel := context.WithCancel(context.Background())
	a := newApp(t, pool, schema, prefix, configure)
	done := make(chan error, 1)
	go func() { done <- a.RunWith(ctx, app.RunOptions{NoServer: true, NoSagas: true}) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	})
	return &env{t: t, d: a.Deps()}
}

// newApp assembles the context, running nothing: another instance of the
// service, whose routes serve in-process. Projections are schemas named
// after them, outside the store's schema: the prefix keeps this test's
// apart from other tests'. Only newEnvOn drops them.
func newApp(t *testing.T, pool *pgxpool.Pool, schema, prefix string, configure func(*app.Config)) *app.App {
	t.Helper()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg := app.Config{
		Pool: pool, Schema: schema, NoMigrate: true, NoEnv: true, Logger: quiet,
	}
	if configure != nil {
		configure(&cfg)
	}
	a, err := app.New(context.Background(), cfg, ordering.Module{Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	return a
}

type response struct {
	code   int
	header http.Header
	body   string
}

func (e *env) do(method, target, body string, header ...string) response {
	e.t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req := httptest.NewRequest(method, target, r)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	rec := httptest.NewRecorder()
	e.d.Server.ServeHTTP(rec, req)
	return response{code: rec.Code, header: rec.Header(), body: rec.Body.String()}
}

// post sends a command with an idempotency key.
func (e *env) post(target, key, body string) response {
	e.t.Helper()
	if key == "" {
		return e.do(http.MethodPost, target, body)
	}
	return e.do(http.MethodPost, target, body, server.HeaderIdempotencyKey, key)
}

// get reads after the projections have processed the log up to pos, the
// X-Cairn-Position of a command response: no sleeping, no polling.
func (e *env) get(target, pos string) response {
	e.t.Helper()
	return e.do(http.MethodGet, target, "", server.HeaderMinPosition, pos)
}

// dispatch sends a command in-process, as the fulfilment saga will.
func (e *env) dispatch(cmd any) command.Result {
	e.t.Helper()
	res, err := e.d.Dispatcher.Dispatch(context.Background(), cmd)
	require.NoError(e.t, err)
	return res
}

// recorded returns when the order's first and last events were recorded:
// its created_at and updated_at.
func (e *env) recorded(orderID string) (first, last string) {
	e.t.Helper()
	evs, err := e.d.Store.ReadStream(context.Background(), "order-"+orderID, eventstore.ReadStreamOptions{})
	require.NoError(e.t, err)
	f := func(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }
	return f(evs[0].RecordedAt), f(evs[len(evs)-1].RecordedAt)
}

// orderJSON is the expected body of GET /orders/:id.
func (e *env) orderJSON(id, customer, status string, total, count int) string {
	created, updated := e.recorded(id)
	return fmt.Sprintf(`{"order_id":%q,"customer_id":%q,"status":%q,"total_cents":%d,"item_count":%d,"created_at":%q,"updated_at":%q}`,
		id, customer, status, total, count, created, updated)
}

func requireStatus(t *testing.T, r response, code int) {
	t.Helper()
	require.Equal(t, code, r.code, "body: %s", r.body)
}

// requireProblem checks an error response: its status, problem type and
// detail (the request ID and instance vary).
func requireProblem(t *testing.T, r response, code int, typ, detail string) {
	t.Helper()
	requireStatus(t, r, code)
	require.Equal(t, server.ProblemContentType, r.header.Get("Content-Type"))
	var p server.Problem
	require.NoError(t, json.Unmarshal([]byte(r.body), &p))
	require.Equal(t, server.ProblemBase+typ, p.Type)
	require.Equal(t, code, p.Status)
	require.Equal(t, detail, p.Detail)
}

const teaAndCup = `[{"sku":"tea","quantity":2,"unit_price_cents":450},{"sku":"cup","quantity":1,"unit_price_cents":1200}]`

func TestOrdering(t *testing.T) {
	e := newEnv(t)

	// Placing an order without an ID: the ID is derived from the
	// Idempotency-Key, so a resubmission names the same order.
	placeBody := `{"customer_id":"c-1","items":` + teaAndCup + `}`
	r := e.post("/orders", "k-1", placeBody)
	requireStatus(t, r, http.StatusAccepted)
	first := ordering.OrderIDFor("k-1")
	pos := r.header.Get(server.HeaderPosition)
	require.NotEmpty(t, pos)
	require.JSONEq(t, fmt.Sprintf(`{"order_id":%q,"command_id":"k-1","position":%q}`, first, pos), r.body)

	again := e.post("/orders", "k-1", placeBody)
	requireStatus(t, again, http.StatusAccepted)
	require.Equal(t, "true", again.header.Get(server.HeaderReplayed))
	require.JSONEq(t, r.body, again.body)

	r = e.get("/orders/"+first, pos)
	requireStatus(t, r, http.StatusOK)
	require.JSONEq(t, e.orderJSON(first, "c-1", "pending", 2100, 3), r.body)

	// A client-chosen ID; placing it again, under another key, conflicts.
	r = e.post("/orders", "k-2", `{"order_id":"o-2","customer_id":"c-1","items":[{"sku":"tea","quantity":1,"unit_price_cents":450}]}`)
	requireStatus(t, r, http.StatusAccepted)
	require.JSONEq(t, fmt.Sprintf(`{"order_id":"o-2","command_id":"k-2","position":%q}`, r.header.Get(server.HeaderPosition)), r.body)
	r = e.post("/orders", "k-3", `{"order_id":"o-2","customer_id":"c-9","items":[{"sku":"tea","quantity":1,"unit_price_cents":450}]}`)
	requireProblem(t, r, http.StatusConflict, "concurrency-conflict",
		"the command conflicted with concurrent changes to the same entity; reload and retry")

	r = e.post("/orders", "k-4", `{"order_id":"o-3","customer_id":"c-2","items":[{"sku":"mug","quantity":4,"unit_price_cents":800}]}`)
	requireStatus(t, r, http.StatusAccepted)

	// The customer cancels o-2; a second cancellation is refused.
	r = e.post("/orders/o-2/cancel", "k-5", `{"reason":"found it cheaper"}`)
	requireStatus(t, r, http.StatusAccepted)
	pos = r.header.Get(server.HeaderPosition)
	r = e.get("/orders/o-2", pos)
	requireStatus(t, r, http.StatusOK)
	require.JSONEq(t, e.orderJSON("o-2", "c-1", "cancelled", 450, 1), r.body)
	r = e.post("/orders/o-2/cancel", "k-6", "")
	requireProblem(t, r, http.StatusUnprocessableEntity, "command-rejected", "cannot cancel order o-2: it is cancelled")
	evs, err := e.d.Store.ReadStream(context.Background(), "order-o-2", eventstore.ReadStreamOptions{})
	require.NoError(t, err)
	require.JSONEq(t, `{"order_id":"o-2","reason":"found it cheaper","by_customer":true}`, string(evs[1].Data))

	// The saga's transitions take the first order to completed; repeating
	// one appends nothing, going back is refused.
	e.dispatch(ordering.MarkOrderReserved{OrderID: first})
	e.dispatch(ordering.MarkOrderPaid{OrderID: first})
	res := e.dispatch(ordering.CompleteOrder{OrderID: first})
	require.Equal(t, command.Result{CommandID: "again"},
		e.dispatch(command.Envelope{ID: "again", Payload: ordering.MarkOrderPaid{OrderID: first}}),
		"a repeated transition appends nothing")
	_, err = e.d.Dispatcher.Dispatch(context.Background(), ordering.RejectOrder{OrderID: first, Reason: "late"})
	require.ErrorIs(t, err, command.ErrRejected)
	require.ErrorIs(t, err, ordering.ErrInvalidTransition)
	pos = res.Position.String()

	r = e.get("/orders/"+first, pos)
	requireStatus(t, r, http.StatusOK)
	require.JSONEq(t, e.orderJSON(first, "c-1", "completed", 2100, 3), r.body)

	evs, err = e.d.Store.ReadStream(context.Background(), "order-"+first, eventstore.ReadStreamOptions{})
	require.NoError(t, err)
	require.Len(t, evs, 4)
	day := evs[3].RecordedAt.UTC().Format(time.DateOnly)
	r = e.get("/stats/sales?from="+day+"&to="+day, pos)
	requireStatus(t, r, http.StatusOK)
	require.JSONEq(t, `{"days":[{"day":"`+day+`","orders_completed":1,"revenue_cents":2100,"items_sold":3}]}`, r.body)
	r = e.get("/stats/sales?from=2001-01-01&to=2001-12-31", pos)
	requireStatus(t, r, http.StatusOK)
	require.JSONEq(t, `{"days":[]}`, r.body)

	// Listings: newest first, filtered, paged.
	r = e.get("/orders?customer_id=c-1", pos)
	requireStatus(t, r, http.StatusOK)
	require.JSONEq(t, `{"items":[`+e.orderJSON("o-2", "c-1", "cancelled", 450, 1)+`,`+
		e.orderJSON(first, "c-1", "completed", 2100, 3)+`],"next_cursor":""}`, r.body)
	r = e.get("/orders?status=pending", pos)
	requireStatus(t, r, http.StatusOK)
	require.JSONEq(t, `{"items":[`+e.orderJSON("o-3", "c-2", "pending", 3200, 4)+`],"next_cursor":""}`, r.body)

	var page struct {
		Items []struct {
			OrderID string `json:"order_id"`
		} `json:"items"`
		NextCursor string `json:"next_cursor"`
	}
	var ids []string
	for target := "/orders?sort=created_at&limit=2"; ; {
		r = e.get(target, pos)
		requireStatus(t, r, http.StatusOK)
		require.NoError(t, json.Unmarshal([]byte(r.body), &page))
		for _, it := range page.Items {
			ids = append(ids, it.OrderID)
		}
		if page.NextCursor == "" {
			break
		}
		target = "/orders?sort=created_at&limit=2&cursor=" + page.NextCursor
	}
	require.Equal(t, []string{first, "o-2", "o-3"}, ids)
}

func TestOrderingRefusals(t *testing.T) {
	e := newEnv(t)

	// Validate: 422 with the reason.
	for body, detail := range map[string]string{
		`{"customer_id":"c-1","items":[]}`:                                                       "an order has 1 to 50 items",
		`{"customer_id":"","items":` + teaAndCup + `}`:                                           "customer_id must be 1 to 64 of A-Z a-z 0-9 . _ -",
		`{"customer_id":"c 1","items":` + teaAndCup + `}`:                                        "customer_id must be 1 to 64 of A-Z a-z 0-9 . _ -",
		`{"order_id":"o/1","customer_id":"c-1","items":` + teaAndCup + `}`:                       "order_id must be 1 to 64 of A-Z a-z 0-9 . _ -",
		`{"customer_id":"c-1","items":[{"sku":"tea","quantity":0,"unit_price_cents":1}]}`:        "items[0].quantity must be between 1 and 1000",
		`{"customer_id":"c-1","items":[{"sku":"tea","quantity":1001,"unit_price_cents":1}]}`:     "items[0].quantity must be between 1 and 1000",
		`{"customer_id":"c-1","items":[{"sku":"tea","quantity":1,"unit_price_cents":-1}]}`:       "items[0].unit_price_cents must be between 0 and 100000000",
		`{"customer_id":"c-1","items":[{"sku":"","quantity":1,"unit_price_cents":1}]}`:           "items[0].sku must be 1 to 64 of A-Z a-z 0-9 . _ -",
		`{"customer_id":"c-1","items":[{"sku":"a","quantity":1},{"sku":"a","quantity":2}]}`:      "items[1].sku a appears twice: one line per SKU",
		`{"customer_id":"c-1","items":[{"sku":"a","quantity":1,"unit_price_cents":100000001}]}`:  "items[0].unit_price_cents must be between 0 and 100000000",
		`{"customer_id":"` + strings.Repeat("c", 65) + `","items":[{"sku":"a","quantity":1}]}`:   "customer_id must be 1 to 64 of A-Z a-z 0-9 . _ -",
		`{"customer_id":"c-1","items":[{"sku":"` + strings.Repeat("s", 65) + `","quantity":1}]}`: "items[0].sku must be 1 to 64 of A-Z a-z 0-9 . _ -",
	} {
		r := e.post("/orders", "", body)
		requireProblem(t, r, http.StatusUnprocessableEntity, "invalid-command", detail)
	}
	many := make([]string, 51)
	for i := range many {
		many[i] = fmt.Sprintf(`{"sku":"s%d","quantity":1}`, i)
	}
	r := e.post("/orders", "", `{"customer_id":"c-1","items":[`+strings.Join(many, ",")+`]}`)
	requireProblem(t, r, http.StatusUnprocessableEntity, "invalid-command", "an order has 1 to 50 items")

	// Bodies that are not a PlaceOrder at all: 400.
	r = e.post("/orders", "", `{"customer_id":`)
	require.Equal(t, http.StatusBadRequest, r.code, r.body)
	r = e.post("/orders", "", `{"customer_id":"c-1","items":[],"coupon":"FREE"}`)
	require.Equal(t, http.StatusBadRequest, r.code, r.body)
	r = e.post("/orders", "", `{"customer_id":"c-1","items":[{"sku":"a","quantity":"two"}]}`)
	require.Equal(t, http.StatusBadRequest, r.code, r.body)

	// Unknown orders: 404, for commands and queries alike. (The read
	// waits for an order to be projected: until the projection has run
	// once, its table does not exist and a query fails with a 500.)
	r = e.post("/orders", "", `{"order_id":"o-1","customer_id":"c-1","items":[{"sku":"a","quantity":1}]}`)
	requireStatus(t, r, http.StatusAccepted)
	pos := r.header.Get(server.HeaderPosition)
	r = e.post("/orders/nope/cancel", "", `{"reason":"x"}`)
	requireProblem(t, r, http.StatusNotFound, "not-found", "the requested resource does not exist")
	r = e.get("/orders/nope", pos)
	requireProblem(t, r, http.StatusNotFound, "not-found", `order "nope" not found`)
	r = e.post("/orders/o-1/cancel", "", `{"reason":"`+strings.Repeat("x", 501)+`"}`)
	requireProblem(t, r, http.StatusUnprocessableEntity, "invalid-command", "reason must be at most 500 characters")
	r = e.post("/orders/o-1/cancel", "", `{"by_the_way":true}`)
	require.Equal(t, http.StatusBadRequest, r.code, r.body)

	// Queries with bad parameters: 400.
	for target, detail := range map[string]string{
		"/stats/sales?from=2024-05-02&to=2024-05-01": "from (2024-05-02) is after to (2024-05-01)",
		"/stats/sales?from=2024-05-32&to=2024-06-01": "from must be a date, YYYY-MM-DD",
		"/stats/sales?from=2024-05-01":               "to must be a date, YYYY-MM-DD",
		"/stats/sales?from=yesterday&to=2024-06-01":  "from must be a date, YYYY-MM-DD",
		"/stats/sales?from=0000-01-01&to=2026-01-01": "from and to must be in year 1 or later",
	} {
		r := e.do(http.MethodGet, target, "")
		requireProblem(t, r, http.StatusBadRequest, "invalid-query", detail)
	}
	for _, target := range []string{
		"/orders?status=shipped",
		"/orders?customer_id=a%20b",
		"/orders?colour=red",
		"/orders?sort=total",
		"/orders?limit=1000",
		"/orders?cursor=forged",
		"/stats/sales?from=2024-05-01&to=2024-05-02&region=eu",
	} {
		r := e.do(http.MethodGet, target, "")
		require.Equal(t, http.StatusBadRequest, r.code, "%s: %s", target, r.body)
	}
}

// In-process senders get the same derived order IDs as HTTP clients.
func TestPlaceOrderDerivesTheOrderIDFromTheCommandID(t *testing.T) {
	e := newEnv(t)
	res := e.dispatch(command.Envelope{
		ID:      "cmd-7",
		Payload: ordering.PlaceOrder{CustomerID: "c-1", Items: []ordering.Item{{SKU: "tea", Quantity: 1}}},
	})
	require.Equal(t, "order-"+ordering.OrderIDFor("cmd-7"), res.StreamID)
	require.Equal(t, "d1b9940b-3ab8-59fe-95f7-637a5782d6ac", ordering.OrderIDFor("cmd-7"),
		"derived IDs must never change: resubmitted commands would name new orders")
}
