package orders_test

// What the sample's system tests share: reading the event log, the
// invariants an order system keeps whatever happened to it, and a client
// that places orders as a careful client does.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cairn-es/cairn/examples/orders/analytics"
	"github.com/cairn-es/cairn/examples/orders/demo"
	"github.com/cairn-es/cairn/examples/orders/fulfilment"
	"github.com/cairn-es/cairn/examples/orders/notification"
	"github.com/cairn-es/cairn/internal/pgtest"
	"github.com/cairn-es/cairn/saga"
	"github.com/cairn-es/cairn/server"
)

func waitReady(ctx context.Context, base string) error {
	for {
		resp, err := http.Get(base + server.ReadyPath)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the server never became ready: %w", ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode, url)
	require.NoError(t, json.NewDecoder(resp.Body).Decode(v))
}

// loggedEvent is the part of an event the checks read.
type loggedEvent struct {
	Type     string
	OrderID  string `json:"order_id"`
	SKU      string `json:"sku"`
	Quantity int    `json:"quantity"`
	Reason   string `json:"reason"`
	// Index is the event's rank in the log's total order.
	Index int `json:"-"`
}

type events []loggedEvent

func (es events) count(typ string) int {
	n := 0
	for _, e := range es {
		if e.Type == typ {
			n++
		}
	}
	return n
}

func (es events) countSKU(typ, sku string) int {
	n := 0
	for _, e := range es {
		if e.Type == typ && e.SKU == sku {
			n++
		}
	}
	return n
}

// first returns the first event of type typ.
func (es events) first(typ string) (loggedEvent, bool) {
	for _, e := range es {
		if e.Type == typ {
			return e, true
		}
	}
	return loggedEvent{}, false
}

func (es events) types() []string {
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = e.Type
	}
	return out
}

type eventLog struct {
	all     events
	byOrder map[string]events
	bySKU   map[string]events
}

func (l eventLog) count(typ string) int { return l.all.count(typ) }

// readLog reads the whole log in its total order.
func readLog(t *testing.T, pool *pgxpool.Pool, schema string) eventLog {
	t.Helper()
	rows, err := pool.Query(context.Background(), `SELECT type, data FROM `+pgx.Identifier{schema, "events"}.Sanitize()+` ORDER BY tx, seq`)
	require.NoError(t, err)
	l := eventLog{byOrder: map[string]events{}, bySKU: map[string]events{}}
	var typ string
	var data []byte
	_, err = pgx.ForEachRow(rows, []any{&typ, &data}, func() error {
		var e loggedEvent
		if err := json.Unmarshal(data, &e); err != nil {
			return err
		}
		e.Type, e.Index = typ, len(l.all)
		l.all = append(l.all, e)
		if e.OrderID != "" {
			l.byOrder[e.OrderID] = append(l.byOrder[e.OrderID], e)
		}
		if e.SKU != "" {
			l.bySKU[e.SKU] = append(l.bySKU[e.SKU], e)
		}
		return nil
	})
	require.NoError(t, err)
	return l
}

// dropPrefixed drops the read-model and saga schemas of a test's system
// when the test ends. Clean-ups run last first: call it before the one
// that stops the system.
func dropPrefixed(t testing.TB, pool *pgxpool.Pool, prefix string) {
	t.Helper()
	pgtest.DropListed(t, pool, `SELECT nspname FROM pg_namespace WHERE starts_with(nspname, $1) OR starts_with(nspname, 'saga_' || $1)`, prefix)
}

// finalEvent is the event of each final status.
var finalEvent = map[string]string{"completed": "OrderCompleted", "rejected": "OrderRejected", "cancelled": "OrderCancelled"}

// checkOrder checks one order's events against the final status its read
// model shows: exactly one final event, the one shown; at most one charge,
// kept only by a completed order; reservations sold when it completed and
// released otherwise. explain adds context to a refund's failure.
func checkOrder(t *testing.T, o demo.Order, status string, evs events, explain func() string) {
	t.Helper()
	finals := evs.count("OrderCompleted") + evs.count("OrderRejected") + evs.count("OrderCancelled")
	require.Equal(t, 1, finals, "order %s: final events %v", o.ID, evs.types())
	require.Equal(t, 1, evs.count(finalEvent[status]), "order %s is %s but its events are %v", o.ID, status, evs.types())

	// No payment is charged twice; money is kept only for completed
	// orders.
	charged, refunded := evs.count("PaymentCharged"), evs.count("PaymentRefunded")
	require.LessOrEqual(t, charged, 1, o.ID)
	if status == "completed" {
		require.Equal(t, 1, charged, o.ID)
		require.Zero(t, refunded, o.ID)
	} else {
		require.Equal(t, charged, refunded, "order %s is %s: its charge must be refunded: %v; saga %s", o.ID, status, evs.types(), explain())
	}

	// Reservations: released unless the order completed, when they are
	// sold instead. A failed payment's reservations are released.
	for _, it := range o.Items {
		reserved := evs.countSKU("InventoryReserved", it.SKU)
		released := evs.countSKU("ReservationReleased", it.SKU)
		committed := evs.countSKU("ReservationCommitted", it.SKU)
		require.LessOrEqual(t, reserved, 1, o.ID)
		if status == "completed" {
			require.Equal(t, [2]int{1, 0}, [2]int{committed, released}, "order %s sku %s", o.ID, it.SKU)
		} else {
			require.Equal(t, [2]int{0, reserved}, [2]int{committed, released}, "order %s (%s) sku %s: %v", o.ID, status, it.SKU, evs.types())
		}
		if evs.count("PaymentFailed") > 0 {
			require.Equal(t, reserved, released, "order %s: a failed payment's reservation stays", o.ID)
		}
	}
}

// checkStock checks that stock is never negative, and that available +
// reserved + sold equals what was added, at every event and in the read
// model (served at baseURL).
func checkStock(t *testing.T, log eventLog, skus []string, baseURL string) {
	t.Helper()
	for _, sku := range skus {
		var available, reserved, sold, added int
		for _, e := range log.bySKU[sku] {
			switch e.Type {
			case "StockAdded":
				added += e.Quantity
				available += e.Quantity
			case "InventoryReserved":
				available -= e.Quantity
				reserved += e.Quantity
			case "ReservationReleased":
				reserved -= e.Quantity
				available += e.Quantity
			case "ReservationCommitted":
				reserved -= e.Quantity
				sold += e.Quantity
			}
			require.GreaterOrEqual(t, available, 0, "%s went negative at %s", sku, e.Type)
			require.GreaterOrEqual(t, reserved, 0, sku)
			require.Equal(t, added, available+reserved+sold, sku)
		}
		require.Zero(t, reserved, "%s: every order is final, so nothing stays reserved", sku)
		var level struct{ Available, Reserved, Sold int }
		getJSON(t, baseURL+"/inventory/"+sku, &level)
		require.Equal(t, [3]int{available, reserved, sold}, [3]int{level.Available, level.Reserved, level.Sold}, sku)
	}
}

// awaitSagaDrained waits until the fulfilment saga has no command left to
// send and no instance still active: an order's final state can show
// before its saga has sent its last commands (a refund after a cancel).
func awaitSagaDrained(ctx context.Context, t *testing.T, insp *saga.Inspector, sagaName string, within time.Duration) {
	t.Helper()
	// The condition runs on a goroutine of its own: it reports to c, not t.
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		st, err := insp.Stats(ctx, sagaName)
		require.NoError(c, err)
		require.NotEmpty(c, st)
		assert.Zero(c, st[0].Commands["pending"], "pending commands")
		assert.Zero(c, st[0].Instances[saga.StatusActive], "active instances")
	}, within, 50*time.Millisecond, "the saga never finished its work")
}

// checkSagas checks that every saga instance ended as its order did, with
// nothing left to send.
func checkSagas(ctx context.Context, t *testing.T, insp *saga.Inspector, sagaName string, placed []demo.Order, views map[string]demo.OrderView) {
	t.Helper()
	for _, o := range placed {
		inst, err := insp.Show(ctx, sagaName, o.ID)
		require.NoError(t, err)
		require.Equal(t, saga.StatusCompleted, inst.Status, "%s: %s", o.ID, inst.Outcome)
		require.Equal(t, views[o.ID].Status, inst.Outcome, o.ID)
		require.Zero(t, inst.PendingCommands+inst.DeadCommands, o.ID)
	}
}

// checkReactions checks that the reactions saw the same story, without the
// saga knowing them: one message per order placed and one per final
// state; the funnel counts every order once.
func checkReactions(ctx context.Context, t *testing.T, pool *pgxpool.Pool, prefix string, placeCount int, byStatus map[string]int, refunds int) {
	t.Helper()
	var received, finalNotes int
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE kind = 'order_received'),
		count(*) FILTER (WHERE kind IN ('order_shipped', 'order_rejected', 'order_cancelled'))
		FROM `+pgx.Identifier{prefix + notification.ReactorName, "notifications"}.Sanitize()).Scan(&received, &finalNotes))
	require.Equal(t, [2]int{placeCount, placeCount}, [2]int{received, finalNotes})
	counters, err := analytics.Counters(ctx, pool, prefix+analytics.ReactorName)
	require.NoError(t, err)
	require.Equal(t, int64(placeCount), counters["orders_placed"])
	require.Equal(t, int64(byStatus["completed"]), counters["orders_completed"])
	require.Equal(t, int64(byStatus["rejected"]), counters["orders_rejected"])
	require.Equal(t, int64(byStatus["cancelled"]), counters["orders_cancelled"])
	require.Equal(t, int64(refunds), counters["payments_refunded"])
}

// sagaOf names the fulfilment saga of a system with prefix.
func sagaOf(prefix string) string { return prefix + fulfilment.SagaName }

// loadClient places orders over HTTP as a careful client does: each order
// under an Idempotency-Key of its own, resent under the same key after a
// connection failure or a 5xx until the server acknowledges it (waiting the
// Retry-After of a 503), since the server handles a command once whichever
// send gets through. It counts every status the server answers.
type loadClient struct {
	base string
	http *http.Client

	mu           sync.Mutex
	codes        map[int]int    // status → responses, every request
	failures     int            // requests that got no response
	unexpected   []string       // 5xx other than 503, 4xx: what was asked and answered
	noRetryAfter int            // 503s without a Retry-After
	unavailable  map[string]int // problem type → 503s
}

func newLoadClient(base string) *loadClient {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 64
	return &loadClient{base: base, http: &http.Client{Timeout: 10 * time.Second, Transport: tr},
		codes: map[int]int{}, unavailable: map[string]int{}}
}

// do sends one request and records its answer.
func (c *loadClient) do(ctx context.Context, method, path, key string, body []byte) (int, http.Header, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, bytes.NewReader(body))
	if err != nil {
		return 0, nil, nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	resp, err := c.http.Do(req)
	var data []byte
	if err == nil {
		data, err = io.ReadAll(resp.Body)
		resp.Body.Close()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil {
		c.failures++
		return 0, nil, nil, err
	}
	c.codes[resp.StatusCode]++
	switch {
	case resp.StatusCode == http.StatusServiceUnavailable:
		if resp.Header.Get("Retry-After") == "" {
			c.noRetryAfter++
		}
		var p struct{ Type string }
		_ = json.Unmarshal(data, &p)
		c.unavailable[p.Type]++
	case resp.StatusCode >= 500 || (resp.StatusCode >= 400 && resp.StatusCode != http.StatusNotFound):
		// A 404 is a GET of an order its read model has not caught up
		// with; the callers decide what other answers mean.
		c.unexpected = append(c.unexpected, fmt.Sprintf("%s %s: %d %s", method, path, resp.StatusCode, bytes.TrimSpace(data)))
	}
	return resp.StatusCode, resp.Header, data, nil
}

// retryAfter is how long a 503 asks the client to wait: its Retry-After in
// seconds, else a second; capped, so a bad header cannot stall the test.
func retryAfter(h http.Header) time.Duration {
	secs, err := strconv.Atoi(h.Get("Retry-After"))
	if err != nil || secs < 0 {
		return time.Second
	}
	return min(time.Duration(secs)*time.Second, 5*time.Second)
}

// place places o until the server acknowledges it, for at most giveUp, and
// sets its ID, position and acknowledgement time.
func (c *loadClient) place(ctx context.Context, o *demo.Order, giveUp time.Duration) error {
	body, err := json.Marshal(map[string]any{"customer_id": o.CustomerID, "items": o.Items})
	if err != nil {
		return err
	}
	data, err := c.command(ctx, "/orders", body, giveUp)
	if err != nil {
		return err
	}
	var placed struct {
		OrderID  string `json:"order_id"`
		Position string `json:"position"`
	}
	if err := json.Unmarshal(data, &placed); err != nil || placed.OrderID == "" {
		return fmt.Errorf("POST /orders answered %q", data)
	}
	o.ID, o.Position, o.PlacedAt = placed.OrderID, placed.Position, time.Now()
	return nil
}

// command POSTs body to path under a new Idempotency-Key until the server
// acknowledges it (a 2xx), for at most giveUp, and returns the answer.
func (c *loadClient) command(ctx context.Context, path string, body []byte, giveUp time.Duration) ([]byte, error) {
	key := uuid.NewString()
	deadline := time.Now().Add(giveUp)
	var last string
	for attempt, delay := 1, 20*time.Millisecond; ; attempt, delay = attempt+1, min(2*delay, 500*time.Millisecond) {
		code, h, data, err := c.do(ctx, http.MethodPost, path, key, body)
		wait := delay
		switch {
		case err != nil:
			last = err.Error()
		case code >= 200 && code < 300:
			return data, nil
		case code >= 500:
			last = fmt.Sprintf("%d %s", code, bytes.TrimSpace(data))
			if code == http.StatusServiceUnavailable {
				wait = retryAfter(h)
			}
		default:
			return nil, fmt.Errorf("POST %s answered %d: %s", path, code, data)
		}
		if time.Now().Add(wait).After(deadline) || attempt >= 1000 {
			return nil, fmt.Errorf("POST %s not acknowledged after %d attempts in %s; last answer: %s", path, attempt, giveUp, last)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(wait):
		}
	}
}

// view GETs an order's read model: ok is false while the server cannot
// answer or does not know the order yet.
func (c *loadClient) view(ctx context.Context, id string) (demo.OrderView, bool) {
	var v demo.OrderView
	code, _, data, err := c.do(ctx, http.MethodGet, "/orders/"+id, "", nil)
	if err != nil || code != http.StatusOK {
		return v, false
	}
	return v, json.Unmarshal(data, &v) == nil
}

// report summarises what the server answered.
func (c *loadClient) report() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return fmt.Sprintf("statuses %v, %d requests unanswered, 503 problem types %v, %d 503s without Retry-After",
		c.codes, c.failures, c.unavailable, c.noRetryAfter)
}

// genOrders generates n orders over skus, repeatably from seed: 1 to 3
// lines of 1 to 3 units each.
func genOrders(seed uint64, n int, skus []string) []demo.Order {
	rnd := rand.New(rand.NewPCG(seed, 0x5eed))
	out := make([]demo.Order, n)
	for i := range out {
		picked := rnd.Perm(len(skus))[:min(1+rnd.IntN(3), len(skus))]
		items := make([]demo.Item, len(picked))
		for j, p := range picked {
			items[j] = demo.Item{SKU: skus[p], Quantity: 1 + rnd.IntN(3), UnitPriceCents: int64(100 * (1 + rnd.IntN(50)))}
		}
		out[i] = demo.Order{CustomerID: fmt.Sprintf("customer-%d", 1+rnd.IntN(40)), Items: items}
	}
	return out
}
