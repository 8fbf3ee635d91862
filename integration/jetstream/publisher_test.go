package jetstream_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	natsjs "github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cairn-es/cairn/eventstore"
	"github.com/cairn-es/cairn/integration"
	"github.com/cairn-es/cairn/integration/jetstream"
	"github.com/cairn-es/cairn/projection"
)

// payConcurrently appends perOrder OrderPaid events (N 1..perOrder) to
// each of orders streams from writers goroutines, one stream per writer at
// a time, and returns the last position.
func payConcurrently(t *testing.T, svc *service, prefix string, orders, perOrder, writers int) eventstore.Position {
	t.Helper()
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		last eventstore.Position
	)
	for w := range writers {
		wg.Go(func() {
			for o := w; o < orders; o += writers {
				for i := 1; i <= perOrder; i++ {
					id := prefix + strconv.Itoa(o)
					ev, err := svc.registry.Encode(OrderPaid{OrderID: id, N: i})
					if !assert.NoError(t, err) {
						return
					}
					ev.Metadata.CorrelationID = "corr-" + id
					res, err := svc.store.Append(context.Background(), "order-"+id, eventstore.Any, []eventstore.Event{ev})
					if !assert.NoError(t, err) {
						return
					}
					mu.Lock()
					if last.Before(res.Position) {
						last = res.Position
					}
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	require.False(t, t.Failed())
	return last
}

// checkOncePerKeyInOrder checks that the stream holds each event of the
// orders exactly once, as the publisher maps it, and the events of each
// order in their order.
func checkOncePerKeyInOrder(t *testing.T, svc *service, js natsjs.JetStream, stream, subject string, orders []string, perOrder int) {
	t.Helper()
	ctx := context.Background()
	want := map[string]eventstore.RecordedEvent{} // by event ID
	for _, o := range orders {
		events, err := svc.store.ReadStream(ctx, "order-"+o, eventstore.ReadStreamOptions{})
		require.NoError(t, err)
		require.Len(t, events, perOrder)
		for _, e := range events {
			want[e.ID.String()] = e
		}
	}
	msgs := messages(t, js, stream)
	require.Len(t, msgs, len(want), "one message per event")
	next := map[string]int{} // per key, the N expected next
	for _, m := range msgs {
		id := m.Header.Get(integration.HeaderMessageID)
		e, ok := want[id]
		require.True(t, ok, "message %s is no event of the test, or a second copy of one", id)
		delete(want, id)
		require.Equal(t, id, m.Header.Get(natsjs.MsgIDHeader), "the message ID is the broker's deduplication ID")
		require.Equal(t, subject, m.Subject)
		require.Equal(t, "PaymentReceived", m.Header.Get(integration.HeaderType))
		require.Equal(t, "1", m.Header.Get(integration.HeaderVersion))
		require.Equal(t, e.StreamID, m.Header.Get(integration.HeaderKey), "the key defaults to the event's stream")
		require.Equal(t, e.Metadata.CorrelationID, m.Header.Get(integration.HeaderCorrelationID))
		require.Equal(t, id, m.Header.Get(integration.HeaderCausationID))
		require.Equal(t, integration.ContentType, m.Header.Get(integration.HeaderContentType))
		at, err := time.Parse(time.RFC3339Nano, m.Header.Get(integration.HeaderOccurredAt))
		require.NoError(t, err)
		require.True(t, at.Equal(e.RecordedAt))
		var body PaymentReceived
		require.NoError(t, json.Unmarshal(m.Data, &body))
		key := e.StreamID
		next[key]++
		require.Equal(t, int(e.Version), body.N)
		require.Equal(t, next[key], body.N, "key %s: messages in the order of their events", key)
	}
}

func TestPublishesEveryEventOnceInOrderPerKeyAndTheBrokerDropsARepublish(t *testing.T) {
	_, js := connect(t, jetstream.URL())
	n := uniqueNames()
	createStream(t, js, n.stream, n.subject)
	svc := newService(t, projection.Config{BatchSize: 50})
	metrics, reg := newMetrics(t)
	p := svc.publisher(t, js, n.prefix, metrics, nil)
	stop := run(t, svc.mgr.Run)

	const orders, perOrder, writers = 24, 12, 8
	last := payConcurrently(t, svc, "o", orders, perOrder, writers)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, svc.mgr.WaitFor(ctx, last, p.Name()))
	var ids []string
	for o := range orders {
		ids = append(ids, "o"+strconv.Itoa(o))
	}
	checkOncePerKeyInOrder(t, svc, js, n.stream, n.prefix+".PaymentReceived", ids, perOrder)
	require.Equal(t, float64(orders*perOrder), counter(t, reg, integration.MetricPublished, map[string]string{"duplicate": "false"}))

	// Publish it all again from the start of the log: the broker drops
	// every copy (same Nats-Msg-Id within its window).
	stop()
	_, err := svc.store.Pool().Exec(ctx, "UPDATE "+pgx.Identifier{p.Name(), "cairn_checkpoint"}.Sanitize()+" SET pos_tx = '0', pos_seq = 0")
	require.NoError(t, err)
	run(t, svc.mgr.Run)
	require.NoError(t, svc.mgr.WaitFor(ctx, last, p.Name()))
	require.Equal(t, uint64(orders*perOrder), streamCount(t, js, n.stream))
	require.Equal(t, float64(orders*perOrder), counter(t, reg, integration.MetricPublished, map[string]string{"duplicate": "true"}))
	checkOncePerKeyInOrder(t, svc, js, n.stream, n.prefix+".PaymentReceived", ids, perOrder)

	st, err := svc.mgr.Status(ctx, p.Name())
	require.NoError(t, err)
	require.Equal(t, int64(0), st.Lag)
	require.Equal(t, projection.Running, st.State)
}

func TestAMappingFailureIsDeadLetteredAndRetryPublishesIt(t *testing.T) {
	_, js := connect(t, jetstream.URL())
	n := uniqueNames()
	createStream(t, js, n.stream, n.subject)
	svc := newService(t, projection.Config{})
	metrics, reg := newMetrics(t)
	var poisoned atomic.Bool
	poisoned.Store(true)
	p := svc.publisher(t, js, n.prefix, metrics, poisoned.Load)
	run(t, svc.mgr.Run)

	res := svc.pay(t, "a",
		OrderPaid{OrderID: "a", N: 1}, OrderPaid{OrderID: "a", N: 2}, OrderPaid{OrderID: "a", N: 3, Poison: true},
		OrderPaid{OrderID: "a", N: 4}, OrderPaid{OrderID: "a", N: 5, Skip: true}, OrderPaid{OrderID: "a", N: 6})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, svc.mgr.WaitFor(ctx, res.Position, p.Name()))

	ns := func() []int {
		var out []int
		for _, m := range messages(t, js, n.stream) {
			var body PaymentReceived
			require.NoError(t, json.Unmarshal(m.Data, &body))
			out = append(out, body.N)
		}
		return out
	}
	require.Equal(t, []int{1, 2, 4, 6}, ns(), "the poisoned event is set aside, the skipped one left out, the rest published once")
	letters, err := svc.mgr.DeadLetters(ctx, p.Name())
	require.NoError(t, err)
	require.Len(t, letters, 1)
	require.Equal(t, int64(3), letters[0].StreamVersion)
	require.Contains(t, letters[0].Error, "cannot map a poisoned payment")
	require.GreaterOrEqual(t, counter(t, reg, integration.MetricPublishFailures, map[string]string{"reason": "mapping"}), 2.0)
	st, err := svc.mgr.Status(ctx, p.Name())
	require.NoError(t, err)
	require.Equal(t, projection.Running, st.State, "a dead letter does not stop the publisher")
	require.Equal(t, int64(1), st.DeadLetters)

	poisoned.Store(false)
	applied, err := svc.mgr.Retry(ctx, p.Name())
	require.NoError(t, err)
	require.Equal(t, 1, applied)
	require.Equal(t, []int{1, 2, 4, 6, 3}, ns(), "the retried event is published, after the others")
	letters, err = svc.mgr.DeadLetters(ctx, p.Name())
	require.NoError(t, err)
	require.Empty(t, letters)
}

// A broker stopped while the publisher works, and started again: the
// publisher waits (no dead letter, no failure state) and resumes by
// itself; every message arrives once, in order per key.
func TestPublisherRidesOutABrokerRestart(t *testing.T) {
	srv := startPrivateServer(t)
	_, js := connect(t, srv.url)
	n := uniqueNames()
	createStream(t, js, n.stream, n.subject)
	svc := newService(t, projection.Config{BatchSize: 20})
	metrics, reg := newMetrics(t)
	p := svc.publisher(t, js, n.prefix, metrics, nil)
	run(t, svc.mgr.Run)

	const orders, perPhase = 10, 8
	pay := func(from int) eventstore.Position {
		var last eventstore.Position
		for i := from; i < from+perPhase; i++ {
			for o := range orders {
				id := "k" + strconv.Itoa(o)
				last = svc.pay(t, id, OrderPaid{OrderID: id, N: i}).Position
			}
		}
		return last
	}
	pay(1)
	require.Eventually(t, func() bool { return streamCount(t, js, n.stream) >= orders*perPhase/2 }, 20*time.Second, 5*time.Millisecond)
	srv.stop(t) // mid-run
	pay(1 + perPhase)
	require.Eventually(t, func() bool {
		return counter(t, reg, integration.MetricPublishFailures, map[string]string{"reason": "unavailable"}) > 0
	}, 20*time.Second, 10*time.Millisecond, "the publisher meets the outage")
	srv.start(t)
	last := pay(1 + 2*perPhase)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, svc.mgr.WaitFor(ctx, last, p.Name()))
	var ids []string
	for o := range orders {
		ids = append(ids, "k"+strconv.Itoa(o))
	}
	checkOncePerKeyInOrder(t, svc, js, n.stream, n.prefix+".PaymentReceived", ids, 3*perPhase)
	letters, err := svc.mgr.DeadLetters(ctx, p.Name())
	require.NoError(t, err)
	require.Empty(t, letters, "an outage dead-letters nothing")
	st, err := svc.mgr.Status(ctx, p.Name())
	require.NoError(t, err)
	require.Equal(t, projection.Running, st.State)
}

func TestSenderTellsARefusedMessageFromAnOutage(t *testing.T) {
	_, js := connect(t, jetstream.URL())
	n := uniqueNames()
	createStream(t, js, n.stream, n.subject)
	s := jetstream.NewSender(js, jetstream.SenderConfig{Timeout: time.Second})
	ctx := context.Background()

	r, err := s.Send(ctx, integration.Envelope{ID: "m-1", Subject: n.prefix + ".x", Data: []byte(`{}`)})
	require.NoError(t, err)
	require.False(t, r.Duplicate)
	r2, err := s.Send(ctx, integration.Envelope{ID: "m-1", Subject: n.prefix + ".x", Data: []byte(`{}`)})
	require.NoError(t, err)
	require.True(t, r2.Duplicate)
	require.Equal(t, r.Sequence, r2.Sequence)

	_, err = s.Send(ctx, integration.Envelope{ID: "m-2", Subject: n.prefix + ".x", Data: make([]byte, 8<<20)})
	require.ErrorIs(t, err, integration.ErrUndeliverable, "too large: the message's fault")

	_, err = s.Send(ctx, integration.Envelope{ID: "m-3", Subject: fmt.Sprintf("nostream%x.x", time.Now().UnixNano()), Data: []byte(`{}`)})
	require.Error(t, err)
	require.NotErrorIs(t, err, integration.ErrUndeliverable, "no stream for the subject: the broker's side, waited out")
}
