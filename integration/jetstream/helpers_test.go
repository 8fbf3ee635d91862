package jetstream_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/cairn-es/cairn/command"
	"github.com/cairn-es/cairn/eventstore"
	"github.com/cairn-es/cairn/eventstore/postgres"
	"github.com/cairn-es/cairn/integration"
	"github.com/cairn-es/cairn/integration/jetstream"
	"github.com/cairn-es/cairn/internal/pgtest"
	"github.com/cairn-es/cairn/projection"
	"github.com/cairn-es/cairn/retry"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// OrderPaid is the sending service's internal event.
type OrderPaid struct {
	OrderID string `json:"order_id"`
	N       int    `json:"n"` // 1, 2, ... per order: its version
	Poison  bool   `json:"poison,omitempty"`
	Skip    bool   `json:"skip,omitempty"`
}

// PaymentReceived is the public contract the publisher maps it to.
type PaymentReceived struct {
	Order string `json:"order"`
	N     int    `json:"n"`
}

// connect connects to the test's NATS server (NATS_URL, else the local
// one), failing the test with what to do when there is none.
func connect(t testing.TB, url string) (*nats.Conn, natsjs.JetStream) {
	t.Helper()
	nc, err := jetstream.Connect(url, nats.ReconnectWait(50*time.Millisecond), nats.ReconnectJitter(50*time.Millisecond, 100*time.Millisecond))
	if err != nil {
		t.Fatalf("%v\nRun the tests with `make test` (scripts/with-nats.sh starts a private nats-server when none answers), "+
			"or point NATS_URL at a server with JetStream enabled.", err)
	}
	t.Cleanup(nc.Close)
	js, err := natsjs.New(nc)
	require.NoError(t, err)
	return nc, js
}

// names are a test's own stream and subject names.
type names struct {
	stream, subject, prefix string // stream T_<hex>, subjects t<hex>.>
}

func uniqueNames() names {
	s := fmt.Sprintf("%x", pgtest.Suffix())
	return names{stream: "T_" + s, subject: "t" + s + ".>", prefix: "t" + s}
}

// createStream creates a file-backed stream and deletes it when the test
// ends.
func createStream(t testing.TB, js natsjs.JetStream, name string, subjects ...string) natsjs.Stream {
	t.Helper()
	s, err := js.CreateStream(context.Background(), natsjs.StreamConfig{
		Name: name, Subjects: subjects, Storage: natsjs.FileStorage, Duplicates: 2 * time.Minute,
	})
	require.NoError(t, err)
	deleteStreamAtEnd(t, js, name)
	return s
}

// deleteStreamAtEnd deletes a stream, if there is one, when the test ends.
func deleteStreamAtEnd(t testing.TB, js natsjs.JetStream, name string) {
	t.Helper()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := js.DeleteStream(ctx, name); err != nil && !errors.Is(err, natsjs.ErrStreamNotFound) {
			t.Errorf("deleting stream %s: %v", name, err)
		}
	})
}

// messages reads every message of a stream, in stream order.
func messages(t testing.TB, js natsjs.JetStream, stream string) []*natsjs.RawStreamMsg {
	t.Helper()
	ctx := context.Background()
	s, err := js.Stream(ctx, stream)
	require.NoError(t, err)
	st := s.CachedInfo().State
	var out []*natsjs.RawStreamMsg
	for seq := st.FirstSeq; st.Msgs > 0 && seq <= st.LastSeq; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if errors.Is(err, natsjs.ErrMsgNotFound) {
			continue
		}
		require.NoError(t, err)
		out = append(out, m)
	}
	return out
}

func streamCount(t testing.TB, js natsjs.JetStream, stream string) uint64 {
	t.Helper()
	s, err := js.Stream(context.Background(), stream)
	require.NoError(t, err)
	return s.CachedInfo().State.Msgs
}

// service is one service's side of the database: a store in a schema of
// its own, its projection manager and its event registry.
type service struct {
	store    *postgres.Store
	mgr      *projection.Manager
	registry *eventstore.Registry
}

func newService(t *testing.T, cfg projection.Config) *service {
	t.Helper()
	pool := pgtest.Pool(t, 4)
	store, err := postgres.New(pool, postgres.Config{Schema: pgtest.Schema(t, pool), Logger: quiet})
	require.NoError(t, err)
	t.Cleanup(store.Close)
	if cfg.Logger == nil {
		cfg.Logger = quiet
	}
	if cfg.LeaderRetry == 0 {
		cfg.LeaderRetry = 200 * time.Millisecond
	}
	if cfg.Retry == (retry.Policy{}) {
		cfg.Retry = retry.Policy{MaxAttempts: 2, BaseDelay: 5 * time.Millisecond, MaxDelay: 10 * time.Millisecond}
	}
	mgr := pgtest.Manager(t, store, cfg)
	t.Cleanup(mgr.Close)
	pgtest.DropStoreModels(t, pool, store.Schema())
	reg := eventstore.NewRegistry()
	eventstore.MustRegister[OrderPaid](reg, "OrderPaid")
	return &service{store: store, mgr: mgr, registry: reg}
}

// pay appends OrderPaid events to stream order-<id>.
func (s *service) pay(t testing.TB, orderID string, events ...OrderPaid) eventstore.AppendResult {
	t.Helper()
	batch := make([]eventstore.Event, len(events))
	for i, e := range events {
		ev, err := s.registry.Encode(e)
		require.NoError(t, err)
		ev.Metadata.CorrelationID = "corr-" + orderID
		batch[i] = ev
	}
	res, err := s.store.Append(context.Background(), "order-"+orderID, eventstore.Any, batch)
	require.NoError(t, err)
	return res
}

// publisher is a publisher of OrderPaid as PaymentReceived on subjects
// <prefix>.PaymentReceived, registered on the service's manager.
func (s *service) publisher(t *testing.T, js natsjs.JetStream, prefix string, metrics *integration.Metrics, poisoned func() bool) *integration.Publisher {
	t.Helper()
	p, err := integration.NewPublisher(fmt.Sprintf("p%x", pgtest.Suffix()), s.registry, jetstream.NewSender(js, jetstream.SenderConfig{Timeout: time.Second}),
		integration.PublisherConfig{SubjectPrefix: prefix, Metrics: metrics})
	require.NoError(t, err)
	integration.Map(p, func(_ context.Context, e OrderPaid, rec eventstore.RecordedEvent) (integration.Message, error) {
		switch {
		case e.Poison && poisoned != nil && poisoned():
			return integration.Message{}, errors.New("cannot map a poisoned payment")
		case e.Skip:
			return integration.Message{}, integration.ErrSkip
		}
		return integration.Message{Type: "PaymentReceived", Data: PaymentReceived{Order: e.OrderID, N: e.N}}, nil
	})
	require.NoError(t, p.Register(s.mgr))
	return p
}

// run runs fn (a daemon's Run) until the test ends or stop is called,
// which waits for it to return.
func run(t testing.TB, fn func(ctx context.Context) error) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- fn(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(20 * time.Second):
				t.Errorf("Run did not return within 20s of its context ending")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// counter reads one counter of a registry by name and labels.
func counter(t testing.TB, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	families, err := reg.Gather()
	require.NoError(t, err)
	total := 0.0
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	metric:
		for _, m := range f.GetMetric() {
			got := map[string]string{}
			for _, l := range m.GetLabel() {
				got[l.GetName()] = l.GetValue()
			}
			for k, v := range labels {
				if got[k] != v {
					continue metric
				}
			}
			switch {
			case m.GetCounter() != nil:
				total += m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				total += m.GetGauge().GetValue()
			case m.GetHistogram() != nil:
				total += float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return total
}

func newMetrics(t testing.TB) (*integration.Metrics, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	m := integration.NewMetrics()
	require.NoError(t, m.Register(reg))
	return m, reg
}

// ScheduleShipment is the receiving service's command.
type ScheduleShipment struct {
	OrderID string `json:"order_id"`
}

// shipping is the receiving service: a store, a dispatcher whose
// ScheduleShipment handler appends ShipmentScheduled to shipment-<order>,
// and an inbox turning PaymentReceived into ScheduleShipment. A hook, when
// set, is the handler: it gets the append to run (or not) and returns its
// result.
type shipping struct {
	*service
	inbox *integration.Inbox
}

type appendFunc func() (eventstore.AppendResult, error)

func newShipping(t *testing.T, hook func(ctx context.Context, c ScheduleShipment, appendIt appendFunc) (eventstore.AppendResult, error)) *shipping {
	t.Helper()
	svc := newService(t, projection.Config{})
	d := command.NewDispatcher(svc.store, command.Config{Logger: quiet})
	command.MustRegister(d, func(ctx context.Context, c ScheduleShipment) (eventstore.AppendResult, error) {
		appendIt := func() (eventstore.AppendResult, error) {
			events := []eventstore.Event{{Type: "ShipmentScheduled", Data: json.RawMessage(`{"order_id":"` + c.OrderID + `"}`)}}
			causation, _ := eventstore.CausationFrom(ctx)
			return svc.store.Append(ctx, "shipment-"+c.OrderID, eventstore.Any, events, causation.Stamp(events)...)
		}
		if hook != nil {
			return hook(ctx, c, appendIt)
		}
		return appendIt()
	})
	in, err := integration.NewInbox(fmt.Sprintf("ship%x", pgtest.Suffix()), d, integration.InboxConfig{})
	require.NoError(t, err)
	integration.Handle(in, "PaymentReceived", func(_ context.Context, m PaymentReceived, _ integration.Message) (any, error) {
		return ScheduleShipment{OrderID: m.Order}, nil
	})
	return &shipping{service: svc, inbox: in}
}

// shipments counts the events of shipment-<order>.
func (s *shipping) shipments(t testing.TB, order string) int {
	t.Helper()
	events, err := s.store.ReadStream(context.Background(), "shipment-"+order, eventstore.ReadStreamOptions{})
	if errors.Is(err, eventstore.ErrStreamNotFound) {
		return 0
	}
	require.NoError(t, err)
	return len(events)
}

// send publishes a PaymentReceived message as a Cairn publisher would,
// with message ID id and key order-<order>.
func send(t testing.TB, js natsjs.JetStream, subject, id, order string, n int) {
	t.Helper()
	data, _ := json.Marshal(PaymentReceived{Order: order, N: n})
	sendRaw(t, js, subject, id, "order-"+order, data)
}

func sendRaw(t testing.TB, js natsjs.JetStream, subject, id, key string, data []byte) {
	t.Helper()
	_, err := jetstream.NewSender(js, jetstream.SenderConfig{}).Send(context.Background(), integration.Envelope{
		ID: id, Subject: subject, Data: data,
		Headers: map[string]string{
			integration.HeaderMessageID: id, integration.HeaderType: "PaymentReceived", integration.HeaderVersion: "1",
			integration.HeaderKey: key, integration.HeaderCorrelationID: "corr-" + key, integration.HeaderCausationID: id,
		},
	})
	require.NoError(t, err)
}

// consumerInfo reads a durable consumer's state from the server.
func consumerInfo(t testing.TB, js natsjs.JetStream, stream, durable string) *natsjs.ConsumerInfo {
	t.Helper()
	c, err := js.Consumer(context.Background(), stream, durable)
	require.NoError(t, err)
	info, err := c.Info(context.Background())
	require.NoError(t, err)
	return info
}

// privateServer is a nats-server of the test's own, which it may stop
// and restart: never the machine's.
type privateServer struct {
	url, dir string
	port     int
	cmd      *exec.Cmd
}

func startPrivateServer(t *testing.T) *privateServer {
	t.Helper()
	if _, err := exec.LookPath("nats-server"); err != nil {
		t.Fatalf("this test starts a private NATS server and nats-server is not installed: install the Debian package nats-server (%v)", err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := l.Addr().(*net.TCPAddr).Port
	require.NoError(t, l.Close())
	s := &privateServer{port: port, dir: t.TempDir(), url: "nats://127.0.0.1:" + strconv.Itoa(port)}
	s.start(t)
	t.Cleanup(func() { s.stop(t) })
	return s
}

func (s *privateServer) start(t *testing.T) {
	t.Helper()
	s.cmd = exec.Command("nats-server", "-a", "127.0.0.1", "-p", strconv.Itoa(s.port), "-js", "-sd", s.dir)
	s.cmd.Stdout, s.cmd.Stderr = io.Discard, io.Discard
	require.NoError(t, s.cmd.Start())
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", s.port), 200*time.Millisecond)
		if err == nil {
			_ = c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("private nats-server on port %d did not answer within 10s: %v", s.port, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop shuts the server down gracefully (SIGTERM) and waits for it.
func (s *privateServer) stop(t *testing.T) {
	t.Helper()
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = s.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = s.cmd.Process.Signal(os.Kill)
		<-done
	}
	s.cmd = nil
}
