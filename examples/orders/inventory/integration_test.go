package inventory_test

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

	"github.com/stretchr/testify/require"

	"github.com/cairn-es/cairn/app"
	"github.com/cairn-es/cairn/command"
	"github.com/cairn-es/cairn/eventstore"
	"github.com/cairn-es/cairn/examples/orders/inventory"
	"github.com/cairn-es/cairn/internal/pgtest"
	"github.com/cairn-es/cairn/server"
)

// env is the inventory context assembled as a service on a schema of its
// own, its projection running, its routes served in-process.
type env struct {
	t *testing.T
	d *app.Deps
}

func newEnv(t *testing.T) *env {
	t.Helper()
	pool := pgtest.Pool(t, 10)
	schema := pgtest.Schema(t, pool)
	prefix := fmt.Sprintf("t%x_", pgtest.Suffix()) // read models are schemas of their own
	// Cleanups run last first: the read model goes once the run stopped.
	pgtest.DropModels(t, pool, prefix+inventory.InventoryLevelsProjection)
	ctx, cancel := context.WithCancel(context.Background())
	a, err := app.New(ctx, app.Config{
		Pool: pool, Schema: schema, NoMigrate: true,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}, inventory.Module{Prefix: prefix})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- a.RunWith(ctx, app.RunOptions{NoServer: true, NoSagas: true}) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
		a.Close()
	})
	return &env{t: t, d: a.Deps()}
}

type response struct {
	code   int
	header http.Header
	body   string
}

func (e *env) do(method, target, body string, header ...string) response {
	e.t.Helper()
	req := httptest.NewRequest(method, target, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	rec := httptest.NewRecorder()
	e.d.Server.ServeHTTP(rec, req)
	return response{code: rec.Code, header: rec.Header(), body: rec.Body.String()}
}

// get reads once the projection has processed the log up to pos.
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

func requireProblem(t *testing.T, r response, code int, typ, detail string) {
	t.Helper()
	require.Equal(t, code, r.code, "body: %s", r.body)
	var p server.Problem
	require.NoError(t, json.Unmarshal([]byte(r.body), &p))
	require.Equal(t, server.ProblemBase+typ, p.Type)
	require.Equal(t, detail, p.Detail)
}

func TestInventory(t *testing.T) {
	e := newEnv(t)

	r := e.do(http.MethodPost, "/inventory/tea/stock", `{"quantity":10}`, server.HeaderIdempotencyKey, "delivery-1")
	require.Equal(t, http.StatusAccepted, r.code, r.body)
	pos := r.header.Get(server.HeaderPosition)
	require.JSONEq(t, `{"command_id":"delivery-1","stream_id":"inventory-tea","version":1,"position":"`+pos+`"}`, r.body)
	r = e.get("/inventory/tea", pos)
	require.Equal(t, http.StatusOK, r.code, r.body)
	require.JSONEq(t, `{"sku":"tea","available":10,"reserved":0,"sold":0}`, r.body)

	// The saga's side: reserve, sell, release; repeats and misses append
	// nothing.
	e.dispatch(inventory.ReserveInventory{SKU: "tea", OrderID: "o-1", Quantity: 3})
	require.Equal(t, command.Result{CommandID: "again"},
		e.dispatch(command.Envelope{ID: "again", Payload: inventory.ReserveInventory{SKU: "tea", OrderID: "o-1", Quantity: 3}}))
	e.dispatch(inventory.ReserveInventory{SKU: "tea", OrderID: "o-2", Quantity: 20}) // fails: a fact
	e.dispatch(inventory.CommitReservation{SKU: "tea", OrderID: "o-1"})
	require.Equal(t, command.Result{CommandID: "nothing"},
		e.dispatch(command.Envelope{ID: "nothing", Payload: inventory.ReleaseReservation{SKU: "tea", OrderID: "o-3"}}))
	e.dispatch(inventory.ReserveInventory{SKU: "tea", OrderID: "o-4", Quantity: 2})
	e.dispatch(inventory.ReleaseReservation{SKU: "tea", OrderID: "o-4"})
	pos = e.dispatch(inventory.ReserveInventory{SKU: "tea", OrderID: "o-5", Quantity: 1}).Position.String()
	r = e.get("/inventory/tea", pos)
	require.Equal(t, http.StatusOK, r.code, r.body)
	require.JSONEq(t, `{"sku":"tea","available":6,"reserved":1,"sold":3}`, r.body)

	evs, err := e.d.Store.ReadStream(context.Background(), "inventory-tea", eventstore.ReadStreamOptions{})
	require.NoError(t, err)
	var types []string
	for _, ev := range evs {
		types = append(types, ev.Type)
	}
	require.Equal(t, []string{"StockAdded", "InventoryReserved", "InventoryReservationFailed", "ReservationCommitted",
		"InventoryReserved", "ReservationReleased", "InventoryReserved"}, types)
	require.JSONEq(t, `{"sku":"tea","order_id":"o-2","quantity":20,"available":7}`, string(evs[2].Data))

	// A SKU nobody stocked: reserving it fails as a fact, and it still has
	// no stock level.
	pos = e.dispatch(inventory.ReserveInventory{SKU: "ghost", OrderID: "o-6", Quantity: 1}).Position.String()
	r = e.get("/inventory/ghost", pos)
	requireProblem(t, r, http.StatusNotFound, "not-found", `SKU "ghost" not found`)

	// Bad input.
	for body, detail := range map[string]string{
		`{"quantity":0}`:       "quantity must be between 1 and 1000000",
		`{"quantity":1000001}`: "quantity must be between 1 and 1000000",
		`{}`:                   "quantity must be between 1 and 1000000",
	} {
		r = e.do(http.MethodPost, "/inventory/tea/stock", body)
		requireProblem(t, r, http.StatusUnprocessableEntity, "invalid-command", detail)
	}
	r = e.do(http.MethodPost, "/inventory/"+strings.Repeat("x", 65)+"/stock", `{"quantity":1}`)
	requireProblem(t, r, http.StatusUnprocessableEntity, "invalid-command", "the SKU must be 1 to 64 of A-Z a-z 0-9 . _ -")
	r = e.do(http.MethodPost, "/inventory/tea/stock", `{"quantity":"ten"}`)
	require.Equal(t, http.StatusBadRequest, r.code, r.body)
	r = e.do(http.MethodPost, "/inventory/tea/stock", `{"quantity":1,"colour":"green"}`)
	require.Equal(t, http.StatusBadRequest, r.code, r.body)
}

// A SKU's stream grows with every order; the repository snapshots it every
// SnapshotEvery events, and loading from the snapshot decides the same.
func TestInventorySnapshots(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.dispatch(inventory.AddStock{SKU: "tea", Quantity: 1000})
	// Events 2 to 49: orders reserve, then buy or give up; event 50: o-49
	// reserves and keeps its reservation.
	for n := 1; n < inventory.SnapshotEvery-1; n += 2 {
		order := fmt.Sprintf("o-%d", n)
		e.dispatch(inventory.ReserveInventory{SKU: "tea", OrderID: order, Quantity: 2})
		if n%4 == 1 {
			e.dispatch(inventory.CommitReservation{SKU: "tea", OrderID: order})
		} else {
			e.dispatch(inventory.ReleaseReservation{SKU: "tea", OrderID: order})
		}
	}
	e.dispatch(inventory.ReserveInventory{SKU: "tea", OrderID: "o-49", Quantity: 2})
	snap, ok, err := e.d.Store.LoadSnapshot(ctx, "inventory-tea")
	require.NoError(t, err)
	require.True(t, ok, "no snapshot after %d events", inventory.SnapshotEvery)
	require.Equal(t, int64(inventory.SnapshotEvery), snap.Version)
	require.Equal(t, "inventory", snap.Type)
	require.JSONEq(t, `{"added":1000,"available":974,"reservations":{"o-49":2},"sold":24}`, string(snap.Data))

	// Decisions after the snapshot see the state it holds.
	require.Equal(t, command.Result{CommandID: "dup"},
		e.dispatch(command.Envelope{ID: "dup", Payload: inventory.ReserveInventory{SKU: "tea", OrderID: "o-49", Quantity: 2}}))
	e.dispatch(inventory.CommitReservation{SKU: "tea", OrderID: "o-49"})
	pos := e.dispatch(inventory.ReserveInventory{SKU: "tea", OrderID: "big", Quantity: 975}).Position.String()
	r := e.get("/inventory/tea", pos)
	require.JSONEq(t, `{"sku":"tea","available":974,"reserved":0,"sold":26}`, r.body)
}
