package aggregate_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/cairn-es/cairn/aggregate"
	"github.com/cairn-es/cairn/eventstore"
	"github.com/cairn-es/cairn/eventstore/memory"
)

func newAccountRepo(t *testing.T, cfg aggregate.Config) (*aggregate.Repository[*account], *memory.Store, *countingStore) {
	t.Helper()
	mem := memory.New(memory.Config{})
	store := &countingStore{Store: mem}
	return aggregate.NewRepository(store, accountRegistry(t), "account", newAccount, cfg), mem, store
}

func streamTypes(t *testing.T, store aggregate.Store, streamID string) []string {
	t.Helper()
	events, err := store.ReadStream(context.Background(), streamID, eventstore.ReadStreamOptions{})
	require.NoError(t, err)
	types := make([]string, len(events))
	for i, e := range events {
		types[i] = e.Type
	}
	return types
}

func TestLoadNotFound(t *testing.T) {
	repo, _, _ := newAccountRepo(t, aggregate.Config{})
	a, err := repo.Load(context.Background(), "nobody")
	require.Nil(t, a)
	require.ErrorIs(t, err, aggregate.ErrNotFound)
	require.ErrorIs(t, err, eventstore.ErrStreamNotFound)
	var nf *aggregate.NotFoundError
	require.ErrorAs(t, err, &nf)
	require.Equal(t, "nobody", nf.ID)
	require.Equal(t, "account-nobody", nf.StreamID)
}

func TestEmptyID(t *testing.T) {
	repo, _, store := newAccountRepo(t, aggregate.Config{})
	_, err := repo.Load(context.Background(), "")
	require.ErrorIs(t, err, eventstore.ErrInvalidStreamID)

	a := repo.New("")
	require.NoError(t, a.OpenAccount("ann"))
	_, err = repo.Save(context.Background(), a)
	require.ErrorIs(t, err, eventstore.ErrInvalidStreamID)
	var ve *eventstore.ValidationError
	require.ErrorAs(t, err, &ve)
	require.Zero(t, store.appends)
}

func TestSaveLoadRoundTrip(t *testing.T) {
	ctx := context.Background()
	repo, _, store := newAccountRepo(t, aggregate.Config{})
	require.Equal(t, "account", repo.Category())
	require.Equal(t, "account-42", repo.StreamID("42"))

	a := repo.New("42")
	require.Equal(t, "42", a.ID())
	require.NoError(t, a.OpenAccount("ann"))
	require.NoError(t, a.Deposit(1000))
	res, err := repo.Save(ctx, a)
	require.NoError(t, err)
	require.Equal(t, "account-42", res.StreamID)
	require.EqualValues(t, 1, res.FirstVersion)
	require.EqualValues(t, 2, res.Version)
	require.False(t, res.Duplicate)
	require.EqualValues(t, 2, a.Version())
	require.Empty(t, a.Changes())
	require.Equal(t, []string{"AccountOpened", "Deposited"}, streamTypes(t, store, "account-42"))

	loaded, err := repo.Load(ctx, "42")
	require.NoError(t, err)
	require.Equal(t, "42", loaded.ID())
	require.EqualValues(t, 2, loaded.Version())
	require.Empty(t, loaded.Changes())
	require.Equal(t, a.Owner, loaded.Owner)
	require.Equal(t, a.BalanceCents, loaded.BalanceCents)
	require.True(t, loaded.Open)

	// A second round on the loaded copy appends at its version.
	require.NoError(t, loaded.Withdraw(300))
	res, err = repo.Save(ctx, loaded)
	require.NoError(t, err)
	require.EqualValues(t, 3, res.FirstVersion)
	require.EqualValues(t, 3, res.Version)

	again, err := repo.Load(ctx, "42")
	require.NoError(t, err)
	require.EqualValues(t, 700, again.BalanceCents)
	require.EqualValues(t, 3, again.Version())
	require.Equal(t, 3, again.Applied)
	require.Equal(t, []string{"AccountOpened", "Deposited", "Withdrawn"}, streamTypes(t, store, "account-42"))
}

func TestSaveWithoutChangesIsANoOp(t *testing.T) {
	ctx := context.Background()
	repo, _, store := newAccountRepo(t, aggregate.Config{})

	res, err := repo.Save(ctx, repo.New("new"))
	require.NoError(t, err)
	require.Equal(t, eventstore.AppendResult{StreamID: "account-new"}, res)

	a := repo.New("1")
	require.NoError(t, a.OpenAccount("ann"))
	_, err = repo.Save(ctx, a)
	require.NoError(t, err)
	res, err = repo.Save(ctx, a)
	require.NoError(t, err)
	require.EqualValues(t, 1, res.Version)
	require.Equal(t, 1, store.appends)
}

func TestSaveUnregisteredEvent(t *testing.T) {
	ctx := context.Background()
	repo, _, store := newAccountRepo(t, aggregate.Config{})
	a := repo.New("1")
	type unregistered struct{}
	aggregate.Record(a, accountOpened{Owner: "x"}, unregistered{})
	_, err := repo.Save(ctx, a)
	require.ErrorIs(t, err, eventstore.ErrUnknownEventType)
	require.Zero(t, store.appends)
	require.Len(t, a.Changes(), 2, "a failed save keeps the changes")
}

func TestSaveConcurrencyConflict(t *testing.T) {
	ctx := context.Background()
	repo, _, store := newAccountRepo(t, aggregate.Config{})
	a := repo.New("1")
	require.NoError(t, a.OpenAccount("ann"))
	require.NoError(t, a.Deposit(100))
	_, err := repo.Save(ctx, a)
	require.NoError(t, err)

	first, err := repo.Load(ctx, "1")
	require.NoError(t, err)
	second, err := repo.Load(ctx, "1")
	require.NoError(t, err)

	require.NoError(t, first.Withdraw(100))
	require.NoError(t, second.Withdraw(100)) // the overdraft the conflict prevents
	_, err = repo.Save(ctx, first)
	require.NoError(t, err)
	_, err = repo.Save(ctx, second)
	require.ErrorIs(t, err, eventstore.ErrConcurrency)
	var ce *eventstore.ConcurrencyError
	require.ErrorAs(t, err, &ce)
	require.Equal(t, "account-1", ce.StreamID)
	require.Equal(t, eventstore.Exact(2), ce.Expected)
	require.EqualValues(t, 3, ce.Actual)
	require.Len(t, second.Changes(), 1)
	require.EqualValues(t, 2, second.Version())

	// Two new aggregates with one ID: the second finds the stream exists.
	x, y := repo.New("2"), repo.New("2")
	require.NoError(t, x.OpenAccount("x"))
	require.NoError(t, y.OpenAccount("y"))
	_, err = repo.Save(ctx, x)
	require.NoError(t, err)
	_, err = repo.Save(ctx, y)
	require.ErrorIs(t, err, eventstore.ErrConcurrency)
	require.Equal(t, []string{"AccountOpened"}, streamTypes(t, store, "account-2"))
}

func TestSaveConcurrentSaves(t *testing.T) {
	ctx := context.Background()
	repo, _, _ := newAccountRepo(t, aggregate.Config{})
	a := repo.New("1")
	require.NoError(t, a.OpenAccount("ann"))
	_, err := repo.Save(ctx, a)
	require.NoError(t, err)

	const n = 8
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			b, err := repo.Load(ctx, "1")
			if err == nil {
				err = b.Deposit(1)
			}
			if err == nil {
				_, err = repo.Save(ctx, b)
			}
			errs[i] = err
		})
	}
	wg.Wait()
	ok := 0
	for _, err := range errs {
		if err == nil {
			ok++
			continue
		}
		require.ErrorIs(t, err, eventstore.ErrConcurrency)
	}
	final, err := repo.Load(ctx, "1")
	require.NoError(t, err)
	require.EqualValues(t, ok, final.BalanceCents)
	require.EqualValues(t, 1+ok, final.Version())
}

func TestSaveStampsCausationAndIsIdempotentPerCommand(t *testing.T) {
	repo, mem, store := newAccountRepo(t, aggregate.Config{})
	cause := eventstore.Causation{CommandID: "cmd-1", CommandType: "OpenAccount", CorrelationID: "corr-1", PayloadHash: []byte{1, 2}}
	ctx := eventstore.WithCausation(context.Background(), cause)

	a := repo.New("1")
	require.NoError(t, a.OpenAccount("ann"))
	require.NoError(t, a.Deposit(5))
	res, err := repo.Save(ctx, a)
	require.NoError(t, err)
	require.False(t, res.Duplicate)

	events, err := mem.ReadStream(context.Background(), "account-1", eventstore.ReadStreamOptions{})
	require.NoError(t, err)
	require.Len(t, events, 2)
	for _, e := range events {
		require.Equal(t, eventstore.Metadata{CorrelationID: "corr-1", CausationID: "cmd-1", CommandID: "cmd-1"}, e.Metadata)
	}
	handled, ok, err := mem.HandledCommand(context.Background(), "cmd-1")
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, "OpenAccount", handled.Type)
	require.EqualValues(t, 2, handled.Result.Version)

	// The same command handled again (a retry after a lost reply): a fresh
	// aggregate records the same events, and nothing more is written.
	retry := repo.New("1")
	require.NoError(t, retry.OpenAccount("ann"))
	require.NoError(t, retry.Deposit(5))
	dup, err := repo.Save(ctx, retry)
	require.NoError(t, err)
	require.True(t, dup.Duplicate)
	require.Equal(t, res.Version, dup.Version)
	require.Equal(t, res.Position, dup.Position)
	require.Empty(t, retry.Changes())
	require.Equal(t, []string{"AccountOpened", "Deposited"}, streamTypes(t, store, "account-1"))

	// Its state holds events that were not stored: it must be reloaded.
	require.NoError(t, retry.Deposit(1))
	_, err = repo.Save(context.Background(), retry)
	require.ErrorIs(t, err, aggregate.ErrStale)
	require.Equal(t, []string{"AccountOpened", "Deposited"}, streamTypes(t, store, "account-1"))

	// Without a Causation nothing is stamped.
	b, err := repo.Load(context.Background(), "1")
	require.NoError(t, err)
	require.NoError(t, b.Deposit(1))
	_, err = repo.Save(context.Background(), b)
	require.NoError(t, err)
	events, err = mem.ReadStream(context.Background(), "account-1", eventstore.ReadStreamOptions{From: 3})
	require.NoError(t, err)
	require.Equal(t, eventstore.Metadata{}, events[0].Metadata)
}

func TestLoadAppliesUpcasters(t *testing.T) {
	ctx := context.Background()
	mem := memory.New(memory.Config{})
	// Version 1 of Deposited held whole euros in "amount".
	reg := eventstore.NewRegistry()
	eventstore.MustRegister[accountOpened](reg, "AccountOpened")
	eventstore.MustRegister[withdrawn](reg, "Withdrawn")
	eventstore.MustRegister[deposited](reg, "Deposited", eventstore.SchemaVersion(2),
		eventstore.Upcast(1, func(data json.RawMessage) (json.RawMessage, error) {
			var v1 struct {
				Amount int64 `json:"amount"`
			}
			if err := json.Unmarshal(data, &v1); err != nil {
				return nil, err
			}
			return json.Marshal(deposited{AmountCents: v1.Amount * 100})
		}))
	repo := aggregate.NewRepository(mem, reg, "account", newAccount, aggregate.Config{})

	_, err := mem.Append(ctx, "account-1", eventstore.NoStream, []eventstore.Event{
		{Type: "AccountOpened", Data: json.RawMessage(`{"owner":"ann"}`)},
		{Type: "Deposited", SchemaVersion: 1, Data: json.RawMessage(`{"amount":3}`)},
	})
	require.NoError(t, err)
	a, err := repo.Load(ctx, "1")
	require.NoError(t, err)
	require.EqualValues(t, 300, a.BalanceCents)

	// New events are written at the current version.
	require.NoError(t, a.Deposit(50))
	_, err = repo.Save(ctx, a)
	require.NoError(t, err)
	events, err := mem.ReadStream(ctx, "account-1", eventstore.ReadStreamOptions{From: 3})
	require.NoError(t, err)
	require.Equal(t, 2, events[0].SchemaVersion)
	require.JSONEq(t, `{"amount_cents":50}`, string(events[0].Data))

	a, err = repo.Load(ctx, "1")
	require.NoError(t, err)
	require.EqualValues(t, 350, a.BalanceCents)
}

func TestLoadUndecodableEvents(t *testing.T) {
	for _, tc := range []struct {
		name     string
		event    eventstore.Event
		sentinel error
		typed    func(error) bool
	}{
		{
			name:     "newer schema version",
			event:    eventstore.Event{Type: "Deposited", SchemaVersion: 5, Data: json.RawMessage(`{}`)},
			sentinel: eventstore.ErrUnknownSchemaVersion,
			typed: func(err error) bool {
				var e *eventstore.UnknownSchemaVersionError
				return errors.As(err, &e) && e.SchemaVersion == 5 && e.CurrentVersion == 1 && e.StreamID == "account-1" && e.Version == 2
			},
		},
		{
			name:     "unknown type",
			event:    eventstore.Event{Type: "Frozen", Data: json.RawMessage(`{}`)},
			sentinel: eventstore.ErrUnknownEventType,
			typed: func(err error) bool {
				var e *eventstore.UnknownEventTypeError
				return errors.As(err, &e) && e.Name == "Frozen" && e.StreamID == "account-1" && e.Version == 2
			},
		},
		{
			name:     "bad data",
			event:    eventstore.Event{Type: "Deposited", Data: json.RawMessage(`{"amount_cents":"lots"}`)},
			sentinel: eventstore.ErrUndecodableEvent,
			typed: func(err error) bool {
				var e *eventstore.DecodeError
				return errors.As(err, &e) && e.Type == "Deposited" && e.Version == 2
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			repo, mem, _ := newAccountRepo(t, aggregate.Config{})
			_, err := mem.Append(ctx, "account-1", eventstore.NoStream, []eventstore.Event{
				{Type: "AccountOpened", Data: json.RawMessage(`{"owner":"ann"}`)},
				tc.event,
			})
			require.NoError(t, err)
			a, err := repo.Load(ctx, "1")
			require.Nil(t, a)
			require.ErrorIs(t, err, tc.sentinel)
			require.True(t, tc.typed(err), "typed error: %v", err)
			require.Contains(t, err.Error(), "account-1")
		})
	}
}

func TestLoadPages(t *testing.T) {
	ctx := context.Background()
	repo, _, store := newAccountRepo(t, aggregate.Config{PageSize: 2})
	a := repo.New("1")
	require.NoError(t, a.OpenAccount("ann"))
	for range 4 {
		require.NoError(t, a.Deposit(10))
	}
	_, err := repo.Save(ctx, a)
	require.NoError(t, err)

	loaded, err := repo.Load(ctx, "1")
	require.NoError(t, err)
	require.EqualValues(t, 5, loaded.Version())
	require.EqualValues(t, 40, loaded.BalanceCents)
	require.Equal(t, []eventstore.ReadStreamOptions{
		{Direction: eventstore.Forward, From: 1, Limit: 2},
		{Direction: eventstore.Forward, From: 3, Limit: 2},
		{Direction: eventstore.Forward, From: 5, Limit: 2},
	}, store.takeReads())
}

func captureLogs() (*slog.Logger, *bytes.Buffer) {
	var buf bytes.Buffer
	return slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})), &buf
}

func TestSnapshotsEveryN(t *testing.T) {
	ctx := context.Background()
	snaps := memory.New(memory.Config{})
	repo, _, store := newAccountRepo(t, aggregate.Config{Snapshots: snaps, SnapshotEvery: 3, SnapshotSchemaVersion: 1})

	a := repo.New("1")
	require.NoError(t, a.OpenAccount("ann"))
	require.NoError(t, a.Deposit(10))
	_, err := repo.Save(ctx, a)
	require.NoError(t, err)
	_, ok, err := snaps.LoadSnapshot(ctx, "account-1")
	require.NoError(t, err)
	require.False(t, ok, "no snapshot before 3 events")

	require.NoError(t, a.Deposit(20))
	require.NoError(t, a.Deposit(30))
	_, err = repo.Save(ctx, a) // version 2 -> 4 crosses 3
	require.NoError(t, err)
	snap, ok, err := snaps.LoadSnapshot(ctx, "account-1")
	require.NoError(t, err)
	require.True(t, ok)
	require.EqualValues(t, 4, snap.Version)
	require.Equal(t, "account", snap.Type)
	require.Equal(t, 1, snap.SchemaVersion)
	require.JSONEq(t, `{"open":true,"owner":"ann","balance_cents":60}`, string(snap.Data))
	require.False(t, snap.TakenAt.IsZero())

	// Load starts from the snapshot: it reads after version 4 and applies
	// nothing.
	store.takeReads()
	loaded, err := repo.Load(ctx, "1")
	require.NoError(t, err)
	require.Equal(t, 0, loaded.Applied)
	require.EqualValues(t, 4, loaded.Version())
	require.EqualValues(t, 60, loaded.BalanceCents)
	require.Equal(t, "ann", loaded.Owner)
	require.Equal(t, "1", loaded.ID())
	require.Equal(t, []eventstore.ReadStreamOptions{{Direction: eventstore.Forward, From: 5, Limit: eventstore.DefaultBatchSize}}, store.takeReads())

	// One more event: no new snapshot, and a load applies just the tail.
	require.NoError(t, loaded.Withdraw(5))
	_, err = repo.Save(ctx, loaded)
	require.NoError(t, err)
	snap, _, _ = snaps.LoadSnapshot(ctx, "account-1")
	require.EqualValues(t, 4, snap.Version)
	loaded, err = repo.Load(ctx, "1")
	require.NoError(t, err)
	require.Equal(t, 1, loaded.Applied)
	require.EqualValues(t, 5, loaded.Version())
	require.EqualValues(t, 55, loaded.BalanceCents)

	// A save of several events that crosses a multiple snapshots at the end.
	require.NoError(t, loaded.Deposit(1))
	require.NoError(t, loaded.Deposit(1))
	require.NoError(t, loaded.Deposit(1))
	require.NoError(t, loaded.Deposit(1))
	_, err = repo.Save(ctx, loaded) // 5 -> 9
	require.NoError(t, err)
	snap, _, _ = snaps.LoadSnapshot(ctx, "account-1")
	require.EqualValues(t, 9, snap.Version)
	require.JSONEq(t, `{"open":true,"owner":"ann","balance_cents":59}`, string(snap.Data))
}

func TestSnapshotOfAnotherSchemaOrTypeIsIgnored(t *testing.T) {
	ctx := context.Background()
	mem := memory.New(memory.Config{})
	store := &countingStore{Store: mem}
	reg := accountRegistry(t)
	logger, logs := captureLogs()

	v1 := aggregate.NewRepository(store, reg, "account", newAccount, aggregate.Config{Snapshots: mem, SnapshotEvery: 2, SnapshotSchemaVersion: 1})
	a := v1.New("1")
	require.NoError(t, a.OpenAccount("ann"))
	require.NoError(t, a.Deposit(10))
	require.NoError(t, a.Deposit(5))
	_, err := v1.Save(ctx, a)
	require.NoError(t, err)
	snap, ok, err := mem.LoadSnapshot(ctx, "account-1")
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, 1, snap.SchemaVersion)

	// The state's shape changed: schema version 2 ignores the old snapshot
	// and replays the stream.
	v2 := aggregate.NewRepository(store, reg, "account", newAccount, aggregate.Config{Snapshots: mem, SnapshotEvery: 2, SnapshotSchemaVersion: 2, Logger: logger})
	store.takeReads()
	loaded, err := v2.Load(ctx, "1")
	require.NoError(t, err)
	require.Equal(t, 3, loaded.Applied)
	require.EqualValues(t, 15, loaded.BalanceCents)
	require.EqualValues(t, 3, loaded.Version())
	require.EqualValues(t, 1, store.takeReads()[0].From)
	require.Contains(t, logs.String(), "ignoring snapshot")

	// A snapshot of another type is ignored too.
	require.NoError(t, mem.SaveSnapshot(ctx, eventstore.Snapshot{StreamID: "account-1", Version: 3, Type: "other", SchemaVersion: 2, Data: json.RawMessage(`{"balance_cents":999}`)}))
	loaded, err = v2.Load(ctx, "1")
	require.NoError(t, err)
	require.EqualValues(t, 15, loaded.BalanceCents)
	require.Equal(t, 3, loaded.Applied)

	// So is one that does not unmarshal, with a warning.
	require.NoError(t, mem.SaveSnapshot(ctx, eventstore.Snapshot{StreamID: "account-1", Version: 3, Type: "account", SchemaVersion: 2, Data: json.RawMessage(`{"balance_cents":"many"}`)}))
	loaded, err = v2.Load(ctx, "1")
	require.NoError(t, err)
	require.EqualValues(t, 15, loaded.BalanceCents)
	require.Equal(t, 3, loaded.Applied)
	require.Contains(t, logs.String(), "level=WARN")
	require.Contains(t, logs.String(), "restoring snapshot failed")

	// The next save that crosses a multiple replaces it with a usable one.
	require.NoError(t, loaded.Deposit(1))
	_, err = v2.Save(ctx, loaded)
	require.NoError(t, err)
	loaded, err = v2.Load(ctx, "1")
	require.NoError(t, err)
	require.Equal(t, 0, loaded.Applied)
	require.EqualValues(t, 16, loaded.BalanceCents)
}

type failingSnapshots struct{ eventstore.SnapshotStore }

func (failingSnapshots) SaveSnapshot(context.Context, eventstore.Snapshot) error {
	return errors.New("snapshot store down")
}

func (failingSnapshots) LoadSnapshot(context.Context, string) (eventstore.Snapshot, bool, error) {
	return eventstore.Snapshot{}, false, errors.New("snapshot store down")
}

func TestSnapshotFailuresDoNotFailSaveOrLoad(t *testing.T) {
	ctx := context.Background()
	logger, logs := captureLogs()
	repo, _, _ := newAccountRepo(t, aggregate.Config{Snapshots: failingSnapshots{}, SnapshotEvery: 1, SnapshotSchemaVersion: 1, Logger: logger})
	a := repo.New("1")
	require.NoError(t, a.OpenAccount("ann"))
	res, err := repo.Save(ctx, a)
	require.NoError(t, err)
	require.EqualValues(t, 1, res.Version)
	require.Contains(t, logs.String(), "saving snapshot failed")
	require.Contains(t, logs.String(), "snapshot store down")
	require.Contains(t, logs.String(), "stream=account-1")

	loaded, err := repo.Load(ctx, "1")
	require.NoError(t, err)
	require.Equal(t, "ann", loaded.Owner)
	require.Contains(t, logs.String(), "loading snapshot failed")
}

// vault keeps its state unexported and snapshots through Snapshotter.
type vault struct {
	aggregate.Base
	items []string
}

func (v *vault) Apply(event any) {
	if e, ok := event.(deposited); ok {
		v.items = append(v.items, strings.Repeat("*", int(e.AmountCents)))
	}
}

func (v *vault) SnapshotState() (any, error) { return v.items, nil }

func (v *vault) RestoreSnapshot(data json.RawMessage) error { return json.Unmarshal(data, &v.items) }

func TestSnapshotter(t *testing.T) {
	ctx := context.Background()
	mem := memory.New(memory.Config{})
	repo := aggregate.NewRepository(mem, accountRegistry(t), "vault", func() *vault { return &vault{} }, aggregate.Config{Snapshots: mem, SnapshotEvery: 2, SnapshotSchemaVersion: 1})
	v := repo.New("1")
	aggregate.Record(v, deposited{AmountCents: 1}, deposited{AmountCents: 2})
	_, err := repo.Save(ctx, v)
	require.NoError(t, err)
	snap, ok, err := mem.LoadSnapshot(ctx, "vault-1")
	require.NoError(t, err)
	require.True(t, ok)
	require.JSONEq(t, `["*","**"]`, string(snap.Data))

	// Prove the load used the snapshot: change it behind the store's back.
	snap.Data = json.RawMessage(`["from snapshot"]`)
	require.NoError(t, mem.SaveSnapshot(ctx, snap))
	loaded, err := repo.Load(ctx, "1")
	require.NoError(t, err)
	require.Equal(t, []string{"from snapshot"}, loaded.items)
	require.EqualValues(t, 2, loaded.Version())
}

type leaky struct {
	aggregate.Base
	Exported int
	hidden   int
}

func (l *leaky) Apply(any) { l.hidden++ }

func TestNewRepositoryPanicsOnBadConfiguration(t *testing.T) {
	mem := memory.New(memory.Config{})
	reg := accountRegistry(t)
	snapshots := func(every, schema int) aggregate.Config {
		return aggregate.Config{Snapshots: mem, SnapshotEvery: every, SnapshotSchemaVersion: schema}
	}
	for name, build := range map[string]func(){
		"nil store":           func() { aggregate.NewRepository(nil, reg, "account", newAccount, aggregate.Config{}) },
		"nil registry":        func() { aggregate.NewRepository(mem, nil, "account", newAccount, aggregate.Config{}) },
		"nil constructor":     func() { aggregate.NewRepository[*account](mem, reg, "account", nil, aggregate.Config{}) },
		"empty category":      func() { aggregate.NewRepository(mem, reg, "", newAccount, aggregate.Config{}) },
		"category with dash":  func() { aggregate.NewRepository(mem, reg, "bank-account", newAccount, aggregate.Config{}) },
		"category with space": func() { aggregate.NewRepository(mem, reg, "bank account", newAccount, aggregate.Config{}) },
		"snapshot every -1":   func() { aggregate.NewRepository(mem, reg, "account", newAccount, snapshots(-1, 1)) },
		"snapshot schema 0":   func() { aggregate.NewRepository(mem, reg, "account", newAccount, snapshots(10, 0)) },
		"snapshot schema -1":  func() { aggregate.NewRepository(mem, reg, "account", newAccount, snapshots(10, -1)) },
		"unexported snapshots": func() {
			aggregate.NewRepository(mem, reg, "leaky", func() *leaky { return &leaky{} }, snapshots(10, 1))
		},
	} {
		t.Run(name, func(t *testing.T) {
			require.Panics(t, build)
		})
	}
	require.PanicsWithValue(t, `aggregate: snapshots of aggregate_test.leaky would lose unexported field hidden: export it (json:"-" to leave it out deliberately) or implement aggregate.Snapshotter`, func() {
		aggregate.NewRepository(mem, reg, "leaky", func() *leaky { return &leaky{} }, snapshots(10, 1))
	})
	// Without snapshots, unexported state is fine, and the snapshot
	// settings are ignored.
	require.NotPanics(t, func() {
		aggregate.NewRepository(mem, reg, "leaky", func() *leaky { return &leaky{} }, aggregate.Config{})
	})
	require.NotPanics(t, func() {
		aggregate.NewRepository(mem, reg, "account", newAccount, aggregate.Config{SnapshotEvery: -1, SnapshotSchemaVersion: -1})
	})
}

// TestSnapshotEveryDefault proves that SnapshotEvery zero snapshots every
// aggregate.DefaultSnapshotEvery events, and no sooner.
func TestSnapshotEveryDefault(t *testing.T) {
	ctx := context.Background()
	snaps := memory.New(memory.Config{})
	repo, _, _ := newAccountRepo(t, aggregate.Config{Snapshots: snaps, SnapshotSchemaVersion: 1})
	a := repo.New("1")
	require.NoError(t, a.OpenAccount("ann"))
	for range aggregate.DefaultSnapshotEvery - 2 {
		require.NoError(t, a.Deposit(1))
	}
	_, err := repo.Save(ctx, a)
	require.NoError(t, err)
	_, ok, err := snaps.LoadSnapshot(ctx, "account-1")
	require.NoError(t, err)
	require.False(t, ok, "a snapshot before %d events", aggregate.DefaultSnapshotEvery)

	require.NoError(t, a.Deposit(1))
	_, err = repo.Save(ctx, a)
	require.NoError(t, err)
	snap, ok, err := snaps.LoadSnapshot(ctx, "account-1")
	require.NoError(t, err)
	require.True(t, ok, "no snapshot after %d events", aggregate.DefaultSnapshotEvery)
	require.EqualValues(t, aggregate.DefaultSnapshotEvery, snap.Version)
}

// TestPageSizeDefault proves that PageSize zero or less reads
// eventstore.DefaultBatchSize events per call.
func TestPageSizeDefault(t *testing.T) {
	ctx := context.Background()
	for _, size := range []int{0, -1} {
		repo, _, store := newAccountRepo(t, aggregate.Config{PageSize: size})
		a := repo.New("1")
		require.NoError(t, a.OpenAccount("ann"))
		_, err := repo.Save(ctx, a)
		require.NoError(t, err)
		store.takeReads()
		_, err = repo.Load(ctx, "1")
		require.NoError(t, err)
		require.Equal(t, []eventstore.ReadStreamOptions{{Direction: eventstore.Forward, From: 1, Limit: eventstore.DefaultBatchSize}}, store.takeReads(), "PageSize %d", size)
	}
}
