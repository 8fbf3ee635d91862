package jetstream_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/cairn-es/cairn/command"
	"github.com/cairn-es/cairn/eventstore"
	"github.com/cairn-es/cairn/eventstore/postgres"
	"github.com/cairn-es/cairn/integration"
	"github.com/cairn-es/cairn/integration/jetstream"
	"github.com/cairn-es/cairn/internal/benchload"
	"github.com/cairn-es/cairn/internal/pgtest"
	"github.com/cairn-es/cairn/projection"
)

// The integration benchmarks report the two figures of docs/benchmarks.md
// for messages between services, each beside a baseline measured in the
// same run:
//
//   - BenchmarkIntegrationPublish: the publisher (a projection) publishing
//     a pre-filled log of CAIRN_BENCH_PUBLISH_EVENTS events (default 5000)
//     to a fresh stream, against bare nats.go loops publishing the very
//     same messages (subjects, headers, bodies, Nats-Msg-Id) to a fresh
//     stream of the same configuration: synchronous js.PublishMsg calls,
//     which is what the publisher does (one message at a time, in log
//     order), and PublishMsgAsync with a window, which it does not do (it
//     would reorder a key after a partial failure) but which is the
//     broker's best rate.
//   - BenchmarkIntegrationLatency: from an event committed in service A to
//     the event its command appended in service B, at a steady 500
//     events/s over CAIRN_BENCH_LATENCY_EVENTS events (default 5000):
//     A's publisher, the stream, B's consumer and inbox, B's dispatcher.
//     p50-ms, p99-ms and max-ms are B's event's RecordedAt minus A's
//     (both PostgreSQL's now() in the appending statement); the
//     publish-* and consume-* figures split that at the time the stream
//     stored the message; events/s is the write rate achieved.
//
// One iteration publishes, or paces, the whole set, so run them with
//
//	go test -run '^$' -bench . -benchtime 1x -count 3 ./integration/jetstream/
//
// against PostgreSQL (DATABASE_URL) and NATS with JetStream (NATS_URL);
// `make bench` does. Streams, schemas and consumers are the run's own and
// deleted at the end.

// benchEnvInt reads a positive integer setting from the environment.
func benchEnvInt(b *testing.B, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		b.Fatalf("%s=%q: want a positive integer", name, v)
	}
	return n
}

// benchKeys is the number of streams (order-0 ... order-49) the events
// are spread over: the ordering keys.
const benchKeys = 50

// benchService is one service's store, in a schema of its own.
type benchService struct {
	pool     *pgxpool.Pool
	store    *postgres.Store
	registry *eventstore.Registry
}

func newBenchService(b *testing.B, conns int32) *benchService {
	b.Helper()
	pool := pgtest.Pool(b, conns)
	schema := pgtest.Schema(b, pool)
	store, err := postgres.New(pool, postgres.Config{Schema: schema, Logger: quiet})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(store.Close)
	// After Schema, so that it runs while the store's tables exist: the
	// publishers' projection schemas live outside the store's.
	pgtest.DropStoreModels(b, pool, schema)
	reg := eventstore.NewRegistry()
	eventstore.MustRegister[OrderPaid](reg, "OrderPaid")
	return &benchService{pool: pool, store: store, registry: reg}
}

// pay appends OrderPaid events n, n+1, ... of order key to order-<key>.
func (s *benchService) pay(ctx context.Context, key int, ns ...int) (eventstore.AppendResult, error) {
	batch := make([]eventstore.Event, len(ns))
	for i, n := range ns {
		ev, err := s.registry.Encode(OrderPaid{OrderID: strconv.Itoa(key), N: n})
		if err != nil {
			return eventstore.AppendResult{}, err
		}
		ev.Metadata.CorrelationID = fmt.Sprintf("corr-%d-%d", key, n)
		batch[i] = ev
	}
	return s.store.Append(ctx, "order-"+strconv.Itoa(key), eventstore.Any, batch)
}

// newBenchPublisher is the publisher of the tests' contract (OrderPaid as
// PaymentReceived on <prefix>.PaymentReceived), sending through sender.
func newBenchPublisher(b *testing.B, s *benchService, sender integration.Sender, prefix string, metrics *integration.Metrics) *integration.Publisher {
	b.Helper()
	p, err := integration.NewPublisher(fmt.Sprintf("bench%x", pgtest.Suffix()), s.registry, sender,
		integration.PublisherConfig{SubjectPrefix: prefix, Metrics: metrics})
	if err != nil {
		b.Fatal(err)
	}
	integration.Map(p, func(_ context.Context, e OrderPaid, _ eventstore.RecordedEvent) (integration.Message, error) {
		return integration.Message{Type: "PaymentReceived", Data: PaymentReceived{Order: e.OrderID, N: e.N}}, nil
	})
	return p
}

// readLog reads the first n events of the store's log, waiting for them to
// be readable: log reads stop at the oldest transaction in flight on the
// server, which other work on it may hold open for a while.
func readLog(b *testing.B, store *postgres.Store, n int) []eventstore.RecordedEvent {
	b.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(2 * time.Minute)
	var out []eventstore.RecordedEvent
	var after eventstore.Position
	for len(out) < n {
		page, err := store.ReadLog(ctx, after, eventstore.ReadLogOptions{Limit: min(n-len(out), eventstore.MaxBatchSize)})
		if err != nil {
			b.Fatal(err)
		}
		if len(page) == 0 {
			if time.Now().After(deadline) {
				b.Fatalf("only %d of %d events readable after 2 minutes: a transaction held open on the server?", len(out), n)
			}
			time.Sleep(20 * time.Millisecond)
			continue
		}
		out = append(out, page...)
		after = page[len(page)-1].Position
	}
	return out
}

// freshStream deletes the stream name, if there is one, and creates it
// empty, configured as the tests' streams are.
func freshStream(b *testing.B, js natsjs.JetStream, name, subject string) {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := js.DeleteStream(ctx, name); err != nil && !errors.Is(err, natsjs.ErrStreamNotFound) {
		b.Fatal(err)
	}
	if _, err := js.CreateStream(ctx, natsjs.StreamConfig{
		Name: name, Subjects: []string{subject}, Storage: natsjs.FileStorage, Duplicates: 2 * time.Minute,
	}); err != nil {
		b.Fatal(err)
	}
}

func checkStreamCount(b *testing.B, js natsjs.JetStream, stream string, want int) {
	b.Helper()
	s, err := js.Stream(context.Background(), stream)
	if err != nil {
		b.Fatal(err)
	}
	if got := s.CachedInfo().State.Msgs; got != uint64(want) {
		b.Fatalf("stream %s holds %d messages, want %d", stream, got, want)
	}
}

// gatedSender holds every Send until open is closed; arrived is closed
// when the first Send comes. It lets the publisher benchmark start its
// clock once the publisher's runner is up, without timing its start.
type gatedSender struct {
	integration.Sender
	open, arrived chan struct{}
	once          sync.Once
}

func (g *gatedSender) Send(ctx context.Context, env integration.Envelope) (integration.Receipt, error) {
	g.once.Do(func() { close(g.arrived) })
	select {
	case <-g.open:
	case <-ctx.Done():
		return integration.Receipt{}, ctx.Err()
	}
	return g.Sender.Send(ctx, env)
}

// asyncWindow is the async baseline's bound on publishes awaiting their
// acknowledgement (nats.go's PublishAsyncMaxPending).
const asyncWindow = 256

func BenchmarkIntegrationPublish(b *testing.B) {
	ctx := context.Background()
	count := benchEnvInt(b, "CAIRN_BENCH_PUBLISH_EVENTS", 5000)
	nc, js := connect(b, jetstream.URL())
	n := uniqueNames()
	svc := newBenchService(b, 4)

	// The log: count events over benchKeys streams, appended in batches of
	// 50 per stream.
	const perAppend = 50
	for i := 0; i < count; i += perAppend {
		var ns []int
		for j := i; j < min(i+perAppend, count); j++ {
			ns = append(ns, j)
		}
		if _, err := svc.pay(ctx, (i/perAppend)%benchKeys, ns...); err != nil {
			b.Fatal(err)
		}
	}
	log := readLog(b, svc.store, count)
	last := log[len(log)-1].Position

	// The baselines publish what the publisher sends for each event: its
	// own Envelope, as nats.Msg values built beforehand, so the loops time
	// nothing but publishing.
	mapper := newBenchPublisher(b, svc, jetstream.NewSender(js, jetstream.SenderConfig{}), n.prefix, nil)
	ids := make([]string, count)
	msgs := make([]*nats.Msg, count)
	for i, rec := range log {
		env, err := mapper.Envelope(ctx, rec)
		if err != nil {
			b.Fatal(err)
		}
		m := nats.NewMsg(env.Subject)
		m.Data = env.Data
		for k, v := range env.Headers {
			m.Header.Set(k, v)
		}
		ids[i], msgs[i] = env.ID, m
	}
	report := func(b *testing.B) {
		b.ReportMetric(float64(count*b.N)/b.Elapsed().Seconds(), "msgs/s")
	}

	// sync-loop: the honest baseline. One synchronous publish after the
	// other, each waiting for the stream's acknowledgement, as the
	// publisher does.
	b.Run("sync-loop", func(b *testing.B) {
		deleteStreamAtEnd(b, js, n.stream)
		for b.Loop() {
			b.StopTimer()
			freshStream(b, js, n.stream, n.subject)
			b.StartTimer()
			for i, m := range msgs {
				if _, err := js.PublishMsg(ctx, m, natsjs.WithMsgID(ids[i])); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			checkStreamCount(b, js, n.stream, count)
			b.StartTimer()
		}
		report(b)
	})

	// async-loop: the broker's best rate from one connection, for scale:
	// asynchronous publishes, at most asyncWindow awaiting their
	// acknowledgement, until every one is acknowledged.
	b.Run("async-loop", func(b *testing.B) {
		deleteStreamAtEnd(b, js, n.stream)
		jsa, err := natsjs.New(nc, natsjs.WithPublishAsyncMaxPending(asyncWindow))
		if err != nil {
			b.Fatal(err)
		}
		futures := make([]natsjs.PubAckFuture, count)
		for b.Loop() {
			b.StopTimer()
			freshStream(b, js, n.stream, n.subject)
			b.StartTimer()
			for i, m := range msgs {
				if futures[i], err = jsa.PublishMsgAsync(m, natsjs.WithMsgID(ids[i])); err != nil {
					b.Fatal(err)
				}
			}
			select {
			case <-jsa.PublishAsyncComplete():
			case <-time.After(time.Minute):
				b.Fatalf("async publishes not acknowledged within a minute (%d pending)", jsa.PublishAsyncPending())
			}
			for _, f := range futures {
				select {
				case <-f.Ok():
				case err := <-f.Err():
					b.Fatal(err)
				}
			}
			b.StopTimer()
			checkStreamCount(b, js, n.stream, count)
			b.StartTimer()
		}
		report(b)
	})

	// publisher: a new publisher (a projection starting at the beginning
	// of the log, default projection.Config: batches of 500 events, one
	// transaction and checkpoint commit each) publishes the log through
	// jetstream.Sender, with metrics. The clock starts when its runner,
	// having taken the lead, created its checkpoint and read the first
	// page of the log, hands the first message to the sender (held there
	// by a gate: startup-ms is the time until then, not counted), and
	// stops when Manager.WaitFor sees the checkpoint of the last event
	// committed, which is after its message was acknowledged.
	b.Run("publisher", func(b *testing.B) {
		deleteStreamAtEnd(b, js, n.stream)
		metrics := integration.NewMetrics()
		if err := metrics.Register(prometheus.NewRegistry()); err != nil {
			b.Fatal(err)
		}
		var startup time.Duration
		for b.Loop() {
			b.StopTimer()
			freshStream(b, js, n.stream, n.subject)
			gate := &gatedSender{Sender: jetstream.NewSender(js, jetstream.SenderConfig{}), open: make(chan struct{}), arrived: make(chan struct{})}
			p := newBenchPublisher(b, svc, gate, n.prefix, metrics)
			mgr := pgtest.Manager(b, svc.store, projection.Config{Logger: quiet})
			if err := p.Register(mgr); err != nil {
				b.Fatal(err)
			}
			runCtx, stop := context.WithCancel(ctx)
			done := make(chan error, 1)
			started := time.Now()
			go func() { done <- mgr.Run(runCtx) }()
			select {
			case <-gate.arrived:
			case <-time.After(30 * time.Second):
				b.Fatal("the publisher did not start within 30s")
			}
			startup += time.Since(started)
			b.StartTimer()
			close(gate.open)
			wctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
			err := mgr.WaitFor(wctx, last, p.Name())
			cancel()
			b.StopTimer()
			stop()
			if runErr := <-done; runErr != nil {
				b.Fatal(runErr)
			}
			mgr.Close()
			if err != nil {
				b.Fatal(err)
			}
			checkStreamCount(b, js, n.stream, count)
			b.StartTimer()
		}
		report(b)
		b.ReportMetric(float64(startup.Milliseconds())/float64(b.N), "startup-ms")
	})
}

// waitLogCount waits until the store's log holds want events.
func waitLogCount(b *testing.B, store *postgres.Store, want int64, within time.Duration) {
	b.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(within)
	for {
		got, err := eventstore.CountLog(ctx, store, eventstore.Start, eventstore.ReadLogOptions{})
		if err != nil {
			b.Fatal(err)
		}
		if got >= want {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("service B's log holds %d events after %s, want %d", got, within, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Latency load: 500 events/s from 4 writers over benchKeys streams; B's
// consumer handles latencyConcurrency messages at once (one key always in
// one worker, in order).
const (
	latencyRate        = 500
	warmKey            = -1 // the first warm-up message's order; the rest count down
	latencyWriters     = 4
	latencyConcurrency = 4
)

func BenchmarkIntegrationLatency(b *testing.B) {
	ctx := context.Background()
	count := benchEnvInt(b, "CAIRN_BENCH_LATENCY_EVENTS", 5000)
	_, js := connect(b, jetstream.URL())
	n := uniqueNames()
	createStream(b, js, n.stream, n.subject)

	// Service A: its log, and its publisher run by its projection daemon.
	a := newBenchService(b, 8)
	mgr := pgtest.Manager(b, a.store, projection.Config{Logger: quiet})
	b.Cleanup(mgr.Close)
	p := newBenchPublisher(b, a, jetstream.NewSender(js, jetstream.SenderConfig{}), n.prefix, nil)
	if err := p.Register(mgr); err != nil {
		b.Fatal(err)
	}

	// Service B: its own store in its own schema, a dispatcher whose
	// AppendOnly handler appends one ShipmentScheduled per command, an
	// inbox turning PaymentReceived into that command, and its consumer.
	bsvc := newBenchService(b, 6)
	d := command.NewDispatcher(bsvc.store, command.Config{Logger: quiet})
	command.MustRegister(d, func(ctx context.Context, c ScheduleShipment) (eventstore.AppendResult, error) {
		events := []eventstore.Event{{Type: "ShipmentScheduled", Data: json.RawMessage(`{"order_id":"` + c.OrderID + `"}`)}}
		causation, _ := eventstore.CausationFrom(ctx)
		return bsvc.store.Append(ctx, "shipment-"+c.OrderID, eventstore.Any, events, causation.Stamp(events)...)
	}, command.AppendOnly())
	inbox, err := integration.NewInbox(fmt.Sprintf("benchship%x", pgtest.Suffix()), d, integration.InboxConfig{})
	if err != nil {
		b.Fatal(err)
	}
	integration.Handle(inbox, "PaymentReceived", func(_ context.Context, m PaymentReceived, _ integration.Message) (any, error) {
		return ScheduleShipment{OrderID: m.Order}, nil
	})
	consumer, err := jetstream.NewConsumer(js, inbox, jetstream.ConsumerConfig{
		Stream: n.stream, Concurrency: latencyConcurrency, Logger: quiet,
	})
	if err != nil {
		b.Fatal(err)
	}
	// Registered before the runs, so deleted after they stop.
	deleteStreamAtEnd(b, js, jetstream.DeadLetterStreamName(inbox.Name()))
	run(b, mgr.Run)
	run(b, consumer.Run)

	// Warm up: one message all the way through (the consumer created,
	// the publisher following the live log), then a second at the
	// measured rate, so that every pooled connection has served a few
	// appends. A PostgreSQL backend's first statements load its catalog
	// caches and compile the append function, tens of milliseconds each
	// while the others do the same; that start is reported apart
	// (warmup-p99-ms), not in the steady state's figures. Warm-up events
	// are on orders with negative keys.
	if _, err := a.pay(ctx, warmKey, 0); err != nil {
		b.Fatal(err)
	}
	waitLogCount(b, bsvc.store, 1, 30*time.Second)
	warm := latencyRate
	benchload.Paced(b, warm, latencyRate, latencyWriters, func(_, i int) error {
		_, err := a.pay(ctx, warmKey-1-i%benchKeys, i)
		return err
	})
	waitLogCount(b, bsvc.store, int64(1+warm), time.Minute)

	var elapsed time.Duration
	sent := 0
	for b.Loop() {
		elapsed += benchload.Paced(b, count, latencyRate, latencyWriters, func(_, i int) error {
			_, err := a.pay(ctx, i%benchKeys, i)
			return err
		})
		sent += count
		waitLogCount(b, bsvc.store, int64(1+warm+sent), time.Minute)
	}

	// The figures, from both logs once everything went through: each of
	// B's events names A's event in its metadata (caused_by, the message
	// ID); both RecordedAt come from PostgreSQL's clock.
	aLog := readLog(b, a.store, 1+warm+sent)
	bLog := readLog(b, bsvc.store, 1+warm+sent)
	recordedA := make(map[string]time.Time, len(aLog))
	warmA := make(map[string]time.Time, warm)
	for _, e := range aLog {
		switch {
		case e.StreamID == "order-"+strconv.Itoa(warmKey):
		case strings.HasPrefix(e.StreamID, "order--"):
			warmA[e.ID.String()] = e.RecordedAt
		default:
			recordedA[e.ID.String()] = e.RecordedAt
		}
	}
	// The stream's time of each message (the server's clock, on the same
	// machine): the publishing leg runs from A's RecordedAt to it, the
	// consuming leg from it to B's RecordedAt.
	stored := make(map[string]time.Time, sent)
	for _, m := range messages(b, js, n.stream) {
		stored[m.Header.Get(natsjs.MsgIDHeader)] = m.Time
	}
	var lat, publish, consume, warmLat benchload.Latencies
	seen := make(map[string]bool, len(bLog))
	for _, e := range bLog {
		cause := e.Metadata.Extra["caused_by"]
		if at, ok := warmA[cause]; ok {
			warmLat = append(warmLat, e.RecordedAt.Sub(at))
			continue
		}
		at, ok := recordedA[cause]
		if !ok {
			continue // the first warm-up message
		}
		if seen[cause] {
			b.Fatalf("event %s of A caused two events in B", cause)
		}
		seen[cause] = true
		lat = append(lat, e.RecordedAt.Sub(at))
		if st, ok := stored[cause]; ok {
			publish = append(publish, st.Sub(at))
			consume = append(consume, e.RecordedAt.Sub(st))
		}
	}
	if len(lat) != sent || len(publish) != sent {
		b.Fatalf("%d of A's %d events caused an event in B, %d of them found in the stream", len(lat), sent, len(publish))
	}
	b.ReportMetric(lat.PercentileMS(50), "p50-ms")
	b.ReportMetric(lat.PercentileMS(99), "p99-ms")
	b.ReportMetric(lat.PercentileMS(100), "max-ms")
	b.ReportMetric(publish.PercentileMS(50), "publish-p50-ms")
	b.ReportMetric(publish.PercentileMS(99), "publish-p99-ms")
	b.ReportMetric(consume.PercentileMS(50), "consume-p50-ms")
	b.ReportMetric(consume.PercentileMS(99), "consume-p99-ms")
	b.ReportMetric(float64(sent)/elapsed.Seconds(), "events/s")
	b.ReportMetric(warmLat.PercentileMS(99), "warmup-p99-ms")
	b.ReportMetric(0, "ns/op")
}
