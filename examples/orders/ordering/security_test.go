package ordering_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"

	"github.com/cairn-es/cairn/app"
	"github.com/cairn-es/cairn/internal/pgtest"
	"github.com/cairn-es/cairn/server"
)

const (
	jwtSecret   = "the sample's HS256 secret, long enough"
	operatorKey = "operator-key-0123456789"
)

// customer signs a token for a customer: its subject is the customer ID.
func customer(t *testing.T, id string) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"sub": id, "scope": "read write", "exp": time.Now().Add(time.Hour).Unix(),
	}).SignedString([]byte(jwtSecret))
	require.NoError(t, err)
	return s
}

func (e *env) as(token, method, target, body string, header ...string) response {
	e.t.Helper()
	return e.do(method, target, body, append([]string{"Authorization", "Bearer " + token}, header...)...)
}

func (e *env) events() int64 {
	e.t.Helper()
	var n int64
	require.NoError(e.t, e.d.DB.Pool.QueryRow(context.Background(), "SELECT count(*) FROM "+e.d.DB.Schema+".events").Scan(&n))
	return n
}

// A customer places, reads, lists and cancels its own orders only; an
// operator reads and lists everyone's. Every refusal is a 403 and appends
// nothing.
func TestCustomersReachOnlyTheirOwnOrders(t *testing.T) {
	pool := pgtest.Pool(t, 10)
	e := newEnvOn(t, pool, pgtest.Schema(t, pool), fmt.Sprintf("t%x_", pgtest.Suffix()), func(c *app.Config) {
		c.Security = app.Security{JWTSecret: jwtSecret, APIKeys: operatorKey + ":read,write,operator"}
	})
	alice, bob := customer(t, "alice"), customer(t, "bob")
	order := func(id, cust string) string {
		return fmt.Sprintf(`{"order_id":%q,"customer_id":%q,"items":[{"sku":"tea","quantity":1,"unit_price_cents":450}]}`, id, cust)
	}

	r := e.as(alice, "POST", "/orders", order("a-1", "alice"))
	requireStatus(t, r, http.StatusAccepted)
	pos := r.header.Get(server.HeaderPosition)
	requireStatus(t, e.as(operatorKey, "POST", "/orders", order("b-1", "bob")), http.StatusAccepted)
	before := e.events()

	// Placing an order for another customer.
	r = e.as(alice, "POST", "/orders", order("a-2", "bob"))
	requireProblem(t, r, http.StatusForbidden, "forbidden", "a customer places orders for itself only: customer_id must be the customer ID your token names")
	// Cancelling another customer's order, at once (before the read model
	// has it) and later.
	r = e.as(alice, "POST", "/orders/b-1/cancel", `{"reason":"mine now"}`)
	requireProblem(t, r, http.StatusForbidden, "forbidden", "a customer cancels its own orders only")
	require.Equal(t, before, e.events(), "a refused command appended events")

	// Reading and listing another customer's orders.
	r = e.as(alice, "GET", "/orders/b-1", "", server.HeaderMinPosition, pos)
	requireProblem(t, r, http.StatusForbidden, "forbidden", "a customer reads its own orders only")
	for _, target := range []string{"/orders?customer_id=bob", "/orders", "/orders?status=pending"} {
		r = e.as(alice, "GET", target, "")
		requireProblem(t, r, http.StatusForbidden, "forbidden", "a customer lists its own orders only: add customer_id=<your customer ID>")
	}
	requireProblem(t, e.as(alice, "GET", "/stats/sales?from=2024-01-01&to=2024-01-02", ""), http.StatusForbidden, "insufficient-scope", `this route requires the scope "operator"`)

	// Its own orders.
	r = e.as(alice, "GET", "/orders/a-1", "", server.HeaderMinPosition, pos)
	requireStatus(t, r, http.StatusOK)
	r = e.as(alice, "GET", "/orders?customer_id=alice", "", server.HeaderMinPosition, pos)
	requireStatus(t, r, http.StatusOK)
	require.Contains(t, r.body, `"order_id":"a-1"`)
	require.NotContains(t, r.body, "b-1")
	// A missing order is a 404 whoever asks.
	requireProblem(t, e.as(alice, "GET", "/orders/nope", ""), http.StatusNotFound, "not-found", `order "nope" not found`)
	r = e.as(alice, "POST", "/orders/nope/cancel", "")
	requireStatus(t, r, http.StatusNotFound)

	// The operator reads all; bob cancels its own order.
	r = e.as(operatorKey, "GET", "/orders", "", server.HeaderMinPosition, pos)
	requireStatus(t, r, http.StatusOK)
	require.Contains(t, r.body, `"order_id":"a-1"`)
	require.Contains(t, r.body, `"order_id":"b-1"`)
	requireStatus(t, e.as(operatorKey, "GET", "/orders/a-1", "", server.HeaderMinPosition, pos), http.StatusOK)
	requireStatus(t, e.as(operatorKey, "GET", "/stats/sales?from=2024-01-01&to=2024-01-02", ""), http.StatusOK)
	requireStatus(t, e.as(bob, "POST", "/orders/b-1/cancel", `{"reason":"changed my mind"}`), http.StatusAccepted)
	require.Equal(t, before+1, e.events())

	// Without a token: 401; the health checks stay open, /metrics needs
	// the scope metrics.
	requireProblem(t, e.do("GET", "/orders/a-1", ""), http.StatusUnauthorized, "unauthorized", "this route requires a bearer token")
	requireStatus(t, e.do("GET", "/healthz", ""), http.StatusOK)
	requireStatus(t, e.do("GET", "/metrics", ""), http.StatusUnauthorized)
	requireStatus(t, e.as(operatorKey, "GET", "/metrics", ""), http.StatusForbidden)
}

// A page cursor works on every instance of the service sharing its
// database, and after a restart; during a rotation the previous key is
// still accepted; a forged cursor or another key's is a 400.
func TestCursorsWorkAcrossInstancesAndRestarts(t *testing.T) {
	pool := pgtest.Pool(t, 10)
	schema := pgtest.Schema(t, pool)
	prefix := fmt.Sprintf("t%x_", pgtest.Suffix())
	a := newEnvOn(t, pool, schema, prefix, nil)
	var pos string
	for i := range 3 {
		r := a.post("/orders", "", fmt.Sprintf(`{"order_id":"c-%d","customer_id":"carol","items":[{"sku":"tea","quantity":1,"unit_price_cents":450}]}`, i))
		requireStatus(t, r, http.StatusAccepted)
		pos = r.header.Get(server.HeaderPosition)
	}
	page := func(srv http.Handler, cursor string) (int, string, string) {
		target := "/orders?customer_id=carol&limit=1"
		if cursor != "" {
			target += "&cursor=" + cursor
		}
		req := httptest.NewRequest("GET", target, nil)
		req.Header.Set(server.HeaderMinPosition, pos)
		rec := httptest.NewRecorder()
		srv.ServeHTTP(rec, req)
		var p struct {
			Items []struct {
				OrderID string `json:"order_id"`
			} `json:"items"`
			NextCursor string `json:"next_cursor"`
			Type       string `json:"type"`
		}
		require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &p), rec.Body.String())
		if rec.Code != http.StatusOK {
			return rec.Code, p.Type, ""
		}
		require.Len(t, p.Items, 1)
		return rec.Code, p.Items[0].OrderID, p.NextCursor
	}
	instance := func(configure func(*app.Config)) http.Handler {
		return newApp(t, pool, schema, prefix, configure).Deps().Server
	}
	invalid := server.ProblemInvalidQuery

	code, first, cursor := page(a.d.Server, "")
	require.Equal(t, http.StatusOK, code)
	require.NotEmpty(t, cursor)
	_, second, _ := page(a.d.Server, cursor)
	require.NotEqual(t, first, second)

	// Another instance on the same database: the key stored there.
	b := newApp(t, pool, schema, prefix, nil)
	code, got, _ := page(b.Deps().Server, cursor)
	require.Equal(t, http.StatusOK, code, "another instance refused the cursor")
	require.Equal(t, second, got)
	// A restart: a new process on the same database.
	b.Close()
	code, got, _ = page(instance(nil), cursor)
	require.Equal(t, http.StatusOK, code, "a restarted instance refused the cursor")
	require.Equal(t, second, got)

	// Forged: a cursor altered, and one of another key.
	forged := []byte(cursor)
	forged[2] ^= 1
	code, typ, _ := page(a.d.Server, string(forged))
	require.Equal(t, http.StatusBadRequest, code)
	require.Equal(t, invalid, typ)
	oldKey, newKey := strings.Repeat("o", 32), strings.Repeat("n", 32)
	configured := func(current, previous string) func(*app.Config) {
		return func(c *app.Config) { c.Security = app.Security{CursorKey: current, CursorKeyPrevious: previous} }
	}
	code, typ, _ = page(instance(configured(oldKey, "")), cursor)
	require.Equal(t, http.StatusBadRequest, code, "an instance of another key accepted the cursor")
	require.Equal(t, invalid, typ)

	// A rotation of configured keys: the previous key still verifies.
	_, _, oldCursor := page(instance(configured(oldKey, "")), "")
	code, got, newCursor := page(instance(configured(newKey, oldKey)), oldCursor)
	require.Equal(t, http.StatusOK, code, "the previous key's cursor during the rotation")
	require.Equal(t, second, got)
	code, typ, _ = page(instance(configured(newKey, "")), oldCursor)
	require.Equal(t, http.StatusBadRequest, code, "the previous key, once dropped")
	require.Equal(t, invalid, typ)
	code, _, _ = page(instance(configured(newKey, "")), newCursor)
	require.Equal(t, http.StatusOK, code, "the rotation signs with the new key")

	// A rotation of the stored key: one INSERT, then a restart.
	_, err := pool.Exec(context.Background(), "INSERT INTO "+schema+".cursor_keys DEFAULT VALUES")
	require.NoError(t, err)
	rotated := instance(nil)
	code, got, rotatedCursor := page(rotated, cursor)
	require.Equal(t, http.StatusOK, code, "the stored previous key's cursor")
	require.Equal(t, second, got)
	code, _, _ = page(a.d.Server, rotatedCursor)
	require.Equal(t, http.StatusBadRequest, code, "an instance not yet restarted does not know the new key")
}
