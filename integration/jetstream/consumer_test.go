package jetstream_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	natsjs "github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/cairn-es/cairn/command"
	"github.com/cairn-es/cairn/eventstore"
	"github.com/cairn-es/cairn/integration"
	"github.com/cairn-es/cairn/integration/jetstream"
	"github.com/cairn-es/cairn/projection"
	"github.com/cairn-es/cairn/retry"
)

// consumer makes a consumer of the test's stream for the shipping inbox;
// its dead-letter stream is deleted when the test ends.
func (s *shipping) consumer(t *testing.T, js natsjs.JetStream, stream string, metrics *integration.Metrics, cfg jetstream.ConsumerConfig) *jetstream.Consumer {
	t.Helper()
	cfg.Stream, cfg.Metrics, cfg.Logger = stream, metrics, quiet
	if cfg.Durable == "" {
		cfg.Durable = s.inbox.Name()
	}
	deleteStreamAtEnd(t, js, jetstream.DeadLetterStreamName(cfg.Durable))
	c, err := jetstream.NewConsumer(js, s.inbox, cfg)
	require.NoError(t, err)
	return c
}

// outcomes reads the inbox's counter of deliveries with outcome o.
func outcomes(t *testing.T, reg *prometheus.Registry, o integration.Outcome) float64 {
	return counter(t, reg, integration.MetricInboxMessages, map[string]string{"outcome": string(o)})
}

// The message is acknowledged only after its command commits: a consumer
// that stops before the commit, or after it but before the
// acknowledgement (the answer lost, as when the process is killed), leaves
// it to be delivered again; the redelivery after a commit is answered from
// the command log, so the command is handled once.
func TestInboxAcksOnlyAfterCommitAndHandlesARedeliveryOnce(t *testing.T) {
	_, js := connect(t, jetstream.URL())
	n := uniqueNames()
	createStream(t, js, n.stream, n.subject)

	const (
		crashBeforeCommit = iota
		crashAfterCommit
		normal
	)
	var (
		mode    atomic.Int32
		calls   atomic.Int32
		entered = make(chan struct{}, 10)
	)
	ship := newShipping(t, func(ctx context.Context, _ ScheduleShipment, appendIt appendFunc) (eventstore.AppendResult, error) {
		calls.Add(1)
		switch mode.Load() {
		case crashBeforeCommit:
			entered <- struct{}{}
			<-ctx.Done() // stopped mid-command
			return eventstore.AppendResult{}, ctx.Err()
		case crashAfterCommit:
			res, err := appendIt()
			if err != nil {
				return res, err
			}
			entered <- struct{}{}
			<-ctx.Done() // stopped after the commit, before answering
			return res, ctx.Err()
		}
		return appendIt()
	})
	metrics, reg := newMetrics(t)
	cfg := jetstream.ConsumerConfig{AckWait: 30 * time.Second} // a delivery lost at a stop would come back only after it
	send(t, js, n.prefix+".PaymentReceived", "evt-1", "o-1", 1)
	unacked := func(phase string) {
		t.Helper()
		info := consumerInfo(t, js, n.stream, ship.inbox.Name())
		require.Equal(t, 1, info.NumAckPending, phase)
		require.Equal(t, uint64(0), info.AckFloor.Stream, "%s: not acknowledged", phase)
	}

	// 1. Stopped while the command runs, before its commit.
	stop := run(t, ship.consumer(t, js, n.stream, metrics, cfg).Run)
	<-entered
	unacked("while the command runs")
	stop()
	require.Equal(t, 0, ship.shipments(t, "o-1"))

	// 2. Stopped after the commit, before the acknowledgement.
	mode.Store(crashAfterCommit)
	stop = run(t, ship.consumer(t, js, n.stream, metrics, cfg).Run)
	<-entered
	require.Equal(t, 1, ship.shipments(t, "o-1"), "committed")
	unacked("committed, not answered")
	stop()

	// 3. Delivered a third time: the command log answers, the handler is
	// not called, the message is acknowledged.
	mode.Store(normal)
	before := calls.Load()
	run(t, ship.consumer(t, js, n.stream, metrics, cfg).Run)
	require.Eventually(t, func() bool {
		info := consumerInfo(t, js, n.stream, ship.inbox.Name())
		return info.AckFloor.Stream == 1 && info.NumAckPending == 0
	}, 10*time.Second, 10*time.Millisecond, "handed back at each stop, delivered again at once")
	require.Equal(t, 1, ship.shipments(t, "o-1"), "handled once")
	require.Equal(t, before, calls.Load(), "answered from the command log")
	require.Equal(t, 1.0, outcomes(t, reg, integration.Duplicate))
	require.Equal(t, 0.0, outcomes(t, reg, integration.Handled))
}

func TestDeadLettersAfterTheBoundAndRetryFromTheDeadLetterStream(t *testing.T) {
	_, js := connect(t, jetstream.URL())
	n := uniqueNames()
	createStream(t, js, n.stream, n.subject)
	var broken atomic.Bool
	broken.Store(true)
	ship := newShipping(t, func(_ context.Context, c ScheduleShipment, appendIt appendFunc) (eventstore.AppendResult, error) {
		if c.OrderID == "bad" && broken.Load() {
			return eventstore.AppendResult{}, errors.New("the warehouse service is still broken")
		}
		return appendIt()
	})
	metrics, reg := newMetrics(t)
	c := ship.consumer(t, js, n.stream, metrics, jetstream.ConsumerConfig{
		Retry: retry.Policy{MaxAttempts: 3, BaseDelay: 20 * time.Millisecond, MaxDelay: 50 * time.Millisecond},
	})
	run(t, c.Run)
	subject := n.prefix + ".PaymentReceived"
	send(t, js, subject, "evt-bad", "bad", 1)
	send(t, js, subject, "evt-good", "good", 1)
	sendRaw(t, js, subject, "evt-poison", "order-poison", []byte(`[1,2,3]`)) // no redelivery can decode it

	dlq := jetstream.DeadLetterStreamName(ship.inbox.Name())
	ctx := context.Background()
	var letters []jetstream.DeadLetter
	require.Eventually(t, func() bool {
		var err error
		letters, err = jetstream.DeadLetters(ctx, js, dlq, 0)
		return err == nil && len(letters) == 2
	}, 10*time.Second, 10*time.Millisecond)
	require.Equal(t, 1, ship.shipments(t, "good"), "a failing message holds up no other key")
	byID := map[string]jetstream.DeadLetter{}
	for _, l := range letters {
		byID[l.MessageID] = l
	}
	bad, poison := byID["evt-bad"], byID["evt-poison"]
	require.Equal(t, 3, bad.Deliveries, "dead-lettered after the bound")
	require.Contains(t, bad.Error, "the warehouse service is still broken")
	require.Equal(t, "PaymentReceived", bad.Type)
	require.Equal(t, "order-bad", bad.Key)
	require.Equal(t, subject, bad.Subject)
	require.Equal(t, n.stream, bad.Stream)
	require.Equal(t, uint64(1), bad.StreamSequence)
	require.Equal(t, ship.inbox.Name(), bad.Consumer)
	require.JSONEq(t, `{"order":"bad","n":1}`, string(bad.Data))
	require.Equal(t, 1, poison.Deliveries, "what cannot be decoded is dead-lettered at once")
	require.Contains(t, poison.Error, "decoding PaymentReceived data")
	require.Eventually(t, func() bool {
		info := consumerInfo(t, js, n.stream, ship.inbox.Name())
		return info.NumAckPending == 0 && info.NumPending == 0
	}, 5*time.Second, 10*time.Millisecond, "dead letters are settled on the source stream")
	require.Equal(t, 2.0, outcomes(t, reg, integration.DeadLetter))
	require.Equal(t, 2.0, outcomes(t, reg, integration.Retry))
	require.Equal(t, 2.0, counter(t, reg, integration.MetricInboxRedeliveries, nil), "the bad message's second and third deliveries")

	streams, err := jetstream.DeadLetterStreams(ctx, js)
	require.NoError(t, err)
	found := false
	for _, s := range streams {
		found = found || (s.Name == dlq && s.Messages == 2)
	}
	require.True(t, found, "the dead-letter stream is listed: %+v", streams)

	// Fixed: retry it. It is consumed again and handled.
	broken.Store(false)
	_, err = jetstream.RetryDeadLetter(ctx, js, dlq, bad.Sequence)
	require.NoError(t, err)
	require.Eventually(t, func() bool { return ship.shipments(t, "bad") == 1 }, 10*time.Second, 10*time.Millisecond)
	letters, err = jetstream.DeadLetters(ctx, js, dlq, 0)
	require.NoError(t, err)
	require.Len(t, letters, 1)
	require.Equal(t, "evt-poison", letters[0].MessageID)
	_, err = jetstream.RetryDeadLetter(ctx, js, dlq, bad.Sequence)
	require.ErrorIs(t, err, jetstream.ErrNotDeadLetter)
}

// MaxAckPending bounds the messages in flight: the server delivers no
// more while that many are unacknowledged, however many workers wait.
func TestMaxAckPendingBoundsTheWorkInFlight(t *testing.T) {
	_, js := connect(t, jetstream.URL())
	n := uniqueNames()
	createStream(t, js, n.stream, n.subject)
	var (
		inFlight, most atomic.Int32
		release        = make(chan struct{})
	)
	ship := newShipping(t, func(ctx context.Context, _ ScheduleShipment, appendIt appendFunc) (eventstore.AppendResult, error) {
		now := inFlight.Add(1)
		defer inFlight.Add(-1)
		for {
			m := most.Load()
			if now <= m || most.CompareAndSwap(m, now) {
				break
			}
		}
		select {
		case <-release:
			return appendIt()
		case <-ctx.Done():
			return eventstore.AppendResult{}, ctx.Err()
		}
	})
	metrics, reg := newMetrics(t)
	const bound, total = 3, 12
	run(t, ship.consumer(t, js, n.stream, metrics, jetstream.ConsumerConfig{
		MaxAckPending: bound, Concurrency: 8, PendingEvery: 20 * time.Millisecond,
	}).Run)
	for i := range total {
		send(t, js, n.prefix+".PaymentReceived", "evt-"+strconv.Itoa(i), "o-"+strconv.Itoa(i), 1)
	}
	require.Eventually(t, func() bool {
		info := consumerInfo(t, js, n.stream, ship.inbox.Name())
		return info.NumAckPending == bound && info.NumPending == total-bound
	}, 10*time.Second, 10*time.Millisecond)
	require.Eventually(t, func() bool {
		return counter(t, reg, integration.MetricConsumerPending, map[string]string{"state": "ack_pending"}) == bound &&
			counter(t, reg, integration.MetricConsumerPending, map[string]string{"state": "pending"}) == total-bound
	}, 5*time.Second, 10*time.Millisecond, "the pending counts are in the metrics")
	time.Sleep(200 * time.Millisecond) // give an unbounded consumer the time to take more
	info := consumerInfo(t, js, n.stream, ship.inbox.Name())
	require.Equal(t, bound, info.NumAckPending)
	require.LessOrEqual(t, most.Load(), int32(bound))

	close(release)
	require.Eventually(t, func() bool {
		info := consumerInfo(t, js, n.stream, ship.inbox.Name())
		return info.NumAckPending == 0 && info.NumPending == 0
	}, 10*time.Second, 10*time.Millisecond)
	for i := range total {
		require.Equal(t, 1, ship.shipments(t, "o-"+strconv.Itoa(i)))
	}
	require.LessOrEqual(t, most.Load(), int32(bound))
	require.Equal(t, float64(total), outcomes(t, reg, integration.Handled))
}

// With several workers, the messages of one key are still handled one at
// a time, in order.
func TestConcurrentWorkersKeepTheOrderOfEachKey(t *testing.T) {
	_, js := connect(t, jetstream.URL())
	n := uniqueNames()
	createStream(t, js, n.stream, n.subject)
	var (
		mu   sync.Mutex
		seen = map[string][]int{}
	)
	ship := newShipping(t, nil)
	integration.Handle(ship.inbox, "Numbered", func(_ context.Context, m PaymentReceived, msg integration.Message) (any, error) {
		mu.Lock()
		seen[msg.Key] = append(seen[msg.Key], m.N)
		mu.Unlock()
		return nil, nil
	})
	metrics, reg := newMetrics(t)
	run(t, ship.consumer(t, js, n.stream, metrics, jetstream.ConsumerConfig{Concurrency: 4}).Run)
	const keys, perKey = 6, 30
	s := jetstream.NewSender(js, jetstream.SenderConfig{})
	for i := 1; i <= perKey; i++ {
		for k := range keys {
			key := "key-" + strconv.Itoa(k)
			_, err := s.Send(context.Background(), integration.Envelope{
				ID: fmt.Sprintf("%s-%d", key, i), Subject: n.prefix + ".Numbered", Data: fmt.Appendf(nil, `{"n":%d}`, i),
				Headers: map[string]string{integration.HeaderType: "Numbered", integration.HeaderKey: key},
			})
			require.NoError(t, err)
		}
	}
	require.Eventually(t, func() bool { return outcomes(t, reg, integration.Ignored) == keys*perKey }, 10*time.Second, 10*time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	for k := range keys {
		got := seen["key-"+strconv.Itoa(k)]
		require.Len(t, got, perKey)
		for i, v := range got {
			require.Equal(t, i+1, v, "key-%d in order", k)
		}
	}
}

// Correlation and causation cross the broker: the event the receiving
// service appends names the sending service's event that caused it.
func TestAnEventInTheReceivingServiceNamesItsCauseInTheSendingService(t *testing.T) {
	_, js := connect(t, jetstream.URL())
	n := uniqueNames()
	createStream(t, js, n.stream, n.subject)
	orders := newService(t, projection.Config{})
	p := orders.publisher(t, js, n.prefix, nil, nil)
	run(t, orders.mgr.Run)
	ship := newShipping(t, nil)
	metrics, reg := newMetrics(t)
	run(t, ship.consumer(t, js, n.stream, metrics, jetstream.ConsumerConfig{Subjects: []string{n.prefix + ".PaymentReceived"}}).Run)

	orders.pay(t, "o-7", OrderPaid{OrderID: "o-7", N: 1})
	require.Eventually(t, func() bool { return ship.shipments(t, "o-7") == 1 }, 10*time.Second, 10*time.Millisecond)
	ctx := context.Background()
	sent, err := orders.store.ReadStream(ctx, "order-o-7", eventstore.ReadStreamOptions{})
	require.NoError(t, err)
	got, err := ship.store.ReadStream(ctx, "shipment-o-7", eventstore.ReadStreamOptions{})
	require.NoError(t, err)
	require.Equal(t, "corr-o-7", got[0].Metadata.CorrelationID, "one correlation ID across both services")
	require.Equal(t, sent[0].ID.String(), got[0].Metadata.Extra["caused_by"], "the command's cause is the sending service's event")
	require.Equal(t, integration.CommandID(ship.inbox.Name(), sent[0].ID.String()), got[0].Metadata.CommandID)
	require.Equal(t, 1.0, counter(t, reg, integration.MetricInboxLatency, nil), "the latency from event to command is observed")
	_ = p
}

// A broker stopped and started again under a running consumer: the
// consumer resumes by itself and every message is handled once.
func TestConsumerRidesOutABrokerRestart(t *testing.T) {
	srv := startPrivateServer(t)
	_, js := connect(t, srv.url)
	n := uniqueNames()
	createStream(t, js, n.stream, n.subject)
	ship := newShipping(t, nil)
	metrics, reg := newMetrics(t)
	run(t, ship.consumer(t, js, n.stream, metrics, jetstream.ConsumerConfig{}).Run)
	sendAll := func(prefix string) {
		for i := range 10 {
			id := prefix + strconv.Itoa(i)
			require.Eventually(t, func() bool {
				_, err := jetstream.NewSender(js, jetstream.SenderConfig{Timeout: time.Second}).Send(context.Background(), integration.Envelope{
					ID: "evt-" + id, Subject: n.prefix + ".PaymentReceived", Data: fmt.Appendf(nil, `{"order":%q}`, id),
					Headers: map[string]string{integration.HeaderType: "PaymentReceived", integration.HeaderMessageID: "evt-" + id},
				})
				return err == nil
			}, 10*time.Second, 50*time.Millisecond, "publishing once the server is back")
		}
	}
	sendAll("a")
	require.Eventually(t, func() bool { return outcomes(t, reg, integration.Handled) == 10 }, 10*time.Second, 10*time.Millisecond)
	srv.stop(t)
	srv.start(t)
	sendAll("b")
	require.Eventually(t, func() bool { return outcomes(t, reg, integration.Handled) == 20 }, 20*time.Second, 10*time.Millisecond)
	for _, p := range []string{"a", "b"} {
		for i := range 10 {
			require.Equal(t, 1, ship.shipments(t, p+strconv.Itoa(i)))
		}
	}
}

func TestNewConsumerChecksNames(t *testing.T) {
	_, js := connect(t, jetstream.URL())
	in, err := integration.NewInbox("shipping.eu", command.NewDispatcher(nil, command.Config{Logger: quiet}), integration.InboxConfig{})
	require.NoError(t, err)
	_, err = jetstream.NewConsumer(js, in, jetstream.ConsumerConfig{Stream: "ORDERS"})
	require.ErrorContains(t, err, `durable name "shipping.eu"`, "a durable name may not have dots")
	_, err = jetstream.NewConsumer(js, in, jetstream.ConsumerConfig{Stream: "ORDERS", Durable: "shipping_eu"})
	require.NoError(t, err)
	_, err = jetstream.NewConsumer(js, in, jetstream.ConsumerConfig{Stream: "", Durable: "shipping_eu"})
	require.ErrorContains(t, err, "stream name")
	_, err = jetstream.NewConsumer(js, in, jetstream.ConsumerConfig{Stream: "ORDERS", Durable: "x", DeadLetterSubject: "dlq.>"})
	require.ErrorIs(t, err, integration.ErrInvalidMessage)
}

// A database that cannot be reached fails no message: its deliveries are
// redelivered past the retry bound until the database answers, and none
// is dead-lettered.
func TestADatabaseOutageDeadLettersNothing(t *testing.T) {
	_, js := connect(t, jetstream.URL())
	n := uniqueNames()
	createStream(t, js, n.stream, n.subject)
	var failures atomic.Int32
	ship := newShipping(t, func(_ context.Context, c ScheduleShipment, appendIt appendFunc) (eventstore.AppendResult, error) {
		if failures.Add(1) <= 6 { // twice the bound
			return eventstore.AppendResult{}, fmt.Errorf("appending: %w", &pgconn.PgError{Code: "57P01", Message: "terminating connection due to administrator command"})
		}
		return appendIt()
	})
	metrics, reg := newMetrics(t)
	c := ship.consumer(t, js, n.stream, metrics, jetstream.ConsumerConfig{
		Retry: retry.Policy{MaxAttempts: 3, BaseDelay: 10 * time.Millisecond, MaxDelay: 20 * time.Millisecond},
	})
	run(t, c.Run)
	send(t, js, n.prefix+".PaymentReceived", "evt-outage", "outage", 1)
	require.Eventually(t, func() bool { return ship.shipments(t, "outage") == 1 }, 10*time.Second, 10*time.Millisecond)
	require.Zero(t, outcomes(t, reg, integration.DeadLetter), "an outage is no failure of the message")
	require.GreaterOrEqual(t, failures.Load(), int32(7), "delivered past the bound of 3")
}
