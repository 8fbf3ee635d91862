// Package demo drives the sample order system over HTTP, as a newcomer's
// first look at it and as the load of its end-to-end test and benchmark:
// it stocks the shelves, places orders from many clients at once (each
// POST resent under its Idempotency-Key until it is answered, so a restart
// of the server loses no order and places none twice), and waits for every
// order to reach its final state.
package demo

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"sync"
	"time"

	"github.com/google/uuid"
)

// Options shape a run. Zero fields take the defaults in brackets.
type Options struct {
	// BaseURL is the server, e.g. http://127.0.0.1:8080.
	BaseURL string
	// Client sends the requests (a client with a 10s timeout).
	Client *http.Client
	// Run names this run; its SKUs are "SKU-<run>-<n>", so runs against
	// one database do not share stock (a random word).
	Run string
	// SKUs is the number of products [8], each stocked with Stock units
	// [20].
	SKUs, Stock int
	// Orders to place [300], from Customers customers [25], with at most
	// MaxLines lines [3] of at most MaxQuantity units [3] each.
	Orders, Customers, MaxLines, MaxQuantity int
	// Concurrency is the number of clients placing orders at once [16].
	Concurrency int
	// Seed makes the orders repeatable (0: random).
	Seed uint64
	// Placed, when set, is called after each order is accepted (the
	// end-to-end test restarts the server from it).
	Placed func(n int)
}

func (o *Options) defaults() {
	if o.Client == nil {
		o.Client = &http.Client{Timeout: 10 * time.Second}
	}
	if o.Run == "" {
		o.Run = fmt.Sprintf("%04x", rand.Uint32()&0xffff)
	}
	set := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	set(&o.SKUs, 8)
	set(&o.Stock, 20)
	set(&o.Orders, 300)
	set(&o.Customers, 25)
	set(&o.MaxLines, 3)
	set(&o.MaxQuantity, 3)
	set(&o.Concurrency, 16)
	if o.Seed == 0 {
		o.Seed = rand.Uint64()
	}
}

// Item is an order line as POST /orders takes it.
type Item struct {
	SKU            string `json:"sku"`
	Quantity       int    `json:"quantity"`
	UnitPriceCents int64  `json:"unit_price_cents"`
}

// Order is an order the run placed.
type Order struct {
	ID         string
	CustomerID string
	Items      []Item
	// Position is the read-your-writes token of its placement.
	Position string
	// PlacedAt is when the server accepted it.
	PlacedAt time.Time
}

// SKUName names the n-th product of a run.
func SKUName(run string, n int) string { return fmt.Sprintf("SKU-%s-%02d", run, n) }

// Stock adds Options.Stock units of each of the run's products and
// returns their SKUs.
func Stock(ctx context.Context, o Options) ([]string, error) {
	o.defaults()
	skus := make([]string, o.SKUs)
	for n := range skus {
		skus[n] = SKUName(o.Run, n+1)
		body := fmt.Sprintf(`{"quantity": %d}`, o.Stock)
		if _, err := post(ctx, o.Client, o.BaseURL+"/inventory/"+skus[n]+"/stock", uuid.NewString(), []byte(body)); err != nil {
			return nil, fmt.Errorf("stocking %s: %w", skus[n], err)
		}
	}
	return skus, nil
}

// Place places Options.Orders orders over skus from Options.Concurrency
// clients and returns them in the order they were generated.
func Place(ctx context.Context, o Options, skus []string) ([]Order, error) {
	o.defaults()
	rnd := rand.New(rand.NewPCG(o.Seed, 0x5eed))
	orders := make([]Order, o.Orders)
	for i := range orders {
		lines := 1 + rnd.IntN(o.MaxLines)
		picked := rnd.Perm(len(skus))[:min(lines, len(skus))]
		items := make([]Item, len(picked))
		for j, p := range picked {
			items[j] = Item{SKU: skus[p], Quantity: 1 + rnd.IntN(o.MaxQuantity), UnitPriceCents: int64(100 * (1 + rnd.IntN(50)))}
		}
		orders[i] = Order{CustomerID: fmt.Sprintf("customer-%d", 1+rnd.IntN(o.Customers)), Items: items}
	}
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		placed int
		errs   []error
	)
	next := make(chan int)
	for range o.Concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := placeOne(ctx, o.Client, o.BaseURL, &orders[i]); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
					continue
				}
				mu.Lock()
				placed++
				n := placed
				mu.Unlock()
				if o.Placed != nil {
					o.Placed(n)
				}
			}
		}()
	}
	for i := range orders {
		select {
		case next <- i:
		case <-ctx.Done():
		}
	}
	close(next)
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return orders, ctx.Err()
}

func placeOne(ctx context.Context, client *http.Client, base string, o *Order) error {
	body, err := json.Marshal(map[string]any{"customer_id": o.CustomerID, "items": o.Items})
	if err != nil {
		return err
	}
	resp, err := post(ctx, client, base+"/orders", uuid.NewString(), body)
	if err != nil {
		return err
	}
	var placed struct {
		OrderID  string `json:"order_id"`
		Position string `json:"position"`
	}
	if err := json.Unmarshal(resp, &placed); err != nil || placed.OrderID == "" {
		return fmt.Errorf("POST /orders answered %q", resp)
	}
	o.ID, o.Position, o.PlacedAt = placed.OrderID, placed.Position, time.Now()
	return nil
}

// post sends a command, resending it under the same Idempotency-Key while
// the server cannot be reached or answers 503 (for at most a minute): the
// server handles the command once whichever send gets through.
func post(ctx context.Context, client *http.Client, url, key string, body []byte) ([]byte, error) {
	deadline := time.Now().Add(time.Minute)
	for delay := 20 * time.Millisecond; ; delay = min(2*delay, time.Second) {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
		if err != nil {
			return nil, err
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Idempotency-Key", key)
		resp, err := client.Do(req)
		if err == nil {
			data, rerr := io.ReadAll(resp.Body)
			resp.Body.Close()
			switch {
			case rerr != nil:
				err = rerr
			case resp.StatusCode == http.StatusAccepted:
				return data, nil
			case resp.StatusCode != http.StatusServiceUnavailable:
				return nil, fmt.Errorf("POST %s: %s: %s", url, resp.Status, data)
			default:
				err = fmt.Errorf("POST %s: %s", url, resp.Status)
			}
		}
		if ctx.Err() != nil || time.Now().After(deadline) {
			return nil, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(delay):
		}
	}
}

// Final statuses of an order.
var Final = map[string]bool{"completed": true, "rejected": true, "cancelled": true}

// OrderView is GET /orders/:id's answer.
type OrderView struct {
	OrderID    string    `json:"order_id"`
	CustomerID string    `json:"customer_id"`
	Status     string    `json:"status"`
	TotalCents int64     `json:"total_cents"`
	ItemCount  int       `json:"item_count"`
	CreatedAt  time.Time `json:"created_at"`
	UpdatedAt  time.Time `json:"updated_at"`
}

// Await polls GET /orders/:id until every order is in a final state, or
// ctx ends (the error then names how many are not). Transport errors and
// 503s (a restarting server) are waited out.
func Await(ctx context.Context, o Options, orders []Order) (map[string]OrderView, error) {
	o.defaults()
	views := make(map[string]OrderView, len(orders))
	pending := make([]Order, len(orders))
	copy(pending, orders)
	for len(pending) > 0 {
		var (
			mu   sync.Mutex
			wg   sync.WaitGroup
			left []Order
		)
		sem := make(chan struct{}, o.Concurrency)
		for _, ord := range pending {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer func() { <-sem; wg.Done() }()
				v, err := get(ctx, o.Client, o.BaseURL+"/orders/"+ord.ID)
				mu.Lock()
				defer mu.Unlock()
				if err == nil && Final[v.Status] {
					views[ord.ID] = v
					return
				}
				left = append(left, ord)
			}()
		}
		wg.Wait()
		pending = left
		if len(pending) == 0 {
			break
		}
		select {
		case <-ctx.Done():
			return views, fmt.Errorf("%d of %d orders are not in a final state: %w", len(pending), len(orders), ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
	return views, nil
}

func get(ctx context.Context, client *http.Client, url string) (OrderView, error) {
	var v OrderView
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return v, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return v, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return v, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return v, json.NewDecoder(resp.Body).Decode(&v)
}
