package orders_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/cairn-es/cairn/examples/orders"
	"github.com/cairn-es/cairn/examples/orders/demo"
	"github.com/cairn-es/cairn/examples/orders/payment"
	"github.com/cairn-es/cairn/internal/pgtest"
)

// benchOrders is the size of one measured run: enough orders for the
// pipeline (HTTP, dispatch, saga, four contexts, read models) to fill up.
const benchOrders = 200

// BenchmarkOrders measures the sample system end to end: one op places
// benchOrders orders over HTTP from 16 clients and waits until every one is
// completed (the saga done, the read model updated). Payments never fail
// and stock never runs out, so every order takes the whole path. The
// baseline is the same number of raw single-row INSERT commits from 16
// clients on the same server, in the same run. Run it with -benchtime 1x.
func BenchmarkOrders(b *testing.B) {
	b.Run("end-to-end", func(b *testing.B) {
		ctx := context.Background()
		base := startBenchSystem(b)
		var latencies []time.Duration
		var elapsed time.Duration
		b.ResetTimer()
		for i := range b.N {
			b.StopTimer()
			opts := demo.Options{BaseURL: base, Run: fmt.Sprintf("b%d", i), SKUs: 8, Stock: 10_000, Orders: benchOrders, Concurrency: 16, Seed: uint64(i + 1)}
			skus, err := demo.Stock(ctx, opts)
			if err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			start := time.Now()
			placed, err := demo.Place(ctx, opts, skus)
			if err != nil {
				b.Fatal(err)
			}
			views, err := demo.Await(ctx, opts, placed)
			if err != nil {
				b.Fatal(err)
			}
			elapsed += time.Since(start)
			for _, v := range views {
				if v.Status != "completed" {
					b.Fatalf("order %s ended %s", v.OrderID, v.Status)
				}
				// From the OrderPlaced event to the OrderCompleted event,
				// as the read model records them.
				latencies = append(latencies, v.UpdatedAt.Sub(v.CreatedAt))
			}
		}
		b.StopTimer()
		slices.Sort(latencies)
		pct := func(p float64) float64 {
			return float64(latencies[min(len(latencies)-1, int(p*float64(len(latencies))))]) / float64(time.Millisecond)
		}
		b.ReportMetric(float64(b.N*benchOrders)/elapsed.Seconds(), "orders/s")
		b.ReportMetric(pct(0.50), "p50-ms")
		b.ReportMetric(pct(0.99), "p99-ms")
	})

	// One order at a time: the latency of the path itself, without the
	// queueing of a burst.
	b.Run("one-at-a-time", func(b *testing.B) {
		ctx := context.Background()
		base := startBenchSystem(b)
		const serial = 30
		var latencies []time.Duration
		b.ResetTimer()
		for i := range b.N {
			b.StopTimer()
			opts := demo.Options{BaseURL: base, Run: fmt.Sprintf("s%d", i), SKUs: 8, Stock: 10_000, Orders: 1, Concurrency: 1}
			skus, err := demo.Stock(ctx, opts)
			if err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			for j := range serial {
				opts.Seed = uint64(j + 1)
				placed, err := demo.Place(ctx, opts, skus)
				if err != nil {
					b.Fatal(err)
				}
				views, err := demo.Await(ctx, opts, placed)
				if err != nil {
					b.Fatal(err)
				}
				v := views[placed[0].ID]
				if v.Status != "completed" {
					b.Fatalf("order %s ended %s", v.OrderID, v.Status)
				}
				latencies = append(latencies, v.UpdatedAt.Sub(v.CreatedAt))
			}
		}
		b.StopTimer()
		slices.Sort(latencies)
		b.ReportMetric(float64(latencies[len(latencies)/2])/float64(time.Millisecond), "p50-ms")
		b.ReportMetric(float64(latencies[min(len(latencies)-1, len(latencies)*99/100)])/float64(time.Millisecond), "p99-ms")
	})

	b.Run("raw-insert", func(b *testing.B) {
		pool := pgtest.Pool(b, 20)
		schema := pgtest.Schema(b, pool)
		ctx := context.Background()
		table := pgx.Identifier{schema, "raw_orders"}.Sanitize()
		if _, err := pool.Exec(ctx, `CREATE TABLE `+table+` (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, data jsonb NOT NULL)`); err != nil {
			b.Fatal(err)
		}
		b.ResetTimer()
		for range b.N {
			var wg sync.WaitGroup
			next := make(chan int)
			for range 16 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for range next {
						if _, err := pool.Exec(ctx, `INSERT INTO `+table+` (data) VALUES ($1)`, []byte(`{"customer_id":"c-1"}`)); err != nil {
							b.Error(err)
						}
					}
				}()
			}
			for i := range benchOrders {
				next <- i
			}
			close(next)
			wg.Wait()
		}
	})
}

// startBenchSystem runs the system with a gateway that approves everything
// at once, and returns its base URL once it is ready.
func startBenchSystem(b *testing.B) string {
	cfg := orders.Config{Prefix: fmt.Sprintf("b%07x_", pgtest.Suffix()&0xfffffff), Gateway: &payment.SimulatedGateway{}}
	sys := newSystem(b, cfg)
	sys.start()
	base := "http://" + sys.addr
	if err := waitReady(context.Background(), base); err != nil {
		b.Fatal(err)
	}
	return base
}
