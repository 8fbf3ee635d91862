package projection_test

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cairn-es/cairn/eventstore"
	"github.com/cairn-es/cairn/eventstore/postgres"
	"github.com/cairn-es/cairn/internal/pgtest"
	"github.com/cairn-es/cairn/projection"
)

// Status says whether a runner holds the projection, whatever its state:
// none before a Manager runs it, the leader's session while one does, none
// again once it stopped.
func TestStatusShowsTheRunnerHoldingTheLeaderLock(t *testing.T) {
	e := newEnv(t, projection.Config{LeaderRetry: 50 * time.Millisecond})
	p := &totals{name: uniqueName(t, "held"), version: 1}
	require.NoError(t, e.mgr.Register(p))
	ctx := context.Background()
	require.NoError(t, e.mgr.Reset(ctx, p.Name())) // running, with no process running it
	st := status(t, e.mgr, p.Name())
	require.Equal(t, projection.Running, st.State)
	require.Nil(t, st.Runner)

	run := startRunner(t, e.mgr)
	key := projection.LockKey("leader", e.store.Schema(), p.Name())
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		st = status(c, e.mgr, p.Name())
		assert.NotNil(c, st.Runner, "no runner reported")
	}, progressWait, pollEvery)
	holders := lockSessions(t, e.store.Pool(), key, true)
	require.Len(t, holders, 1)
	require.Contains(t, holders, st.Runner.BackendPID, "the runner is the session holding the leader lock")
	require.Equal(t, runnerName(t), st.Runner.Application)
	require.NotNil(t, st.Runner.Since)
	require.Contains(t, st.Runner.String(), fmt.Sprintf("(backend %d)", st.Runner.BackendPID))

	require.NoError(t, run.stop())
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		st = status(c, e.mgr, p.Name())
		assert.Nil(c, st.Runner, "runner still reported after Run returned")
	}, progressWait, pollEvery)
}

// runnerName is the application_name a leader connection has: the
// database URL's, or the one the runner gives itself when that is empty.
func runnerName(t *testing.T) string {
	cfg, err := pgx.ParseConfig(pgtest.URL())
	require.NoError(t, err)
	if app := cfg.RuntimeParams["application_name"]; app != "" {
		return app
	}
	host, err := os.Hostname()
	require.NoError(t, err)
	return fmt.Sprintf("cairn runner pid %d on %s", os.Getpid(), host)
}

// A Manager that does not register a projection counts every event after
// its checkpoint and says so; the one that registers it counts its types.
// KnownNames lists both kinds.
func TestStatusSaysWhenItCannotKnowTheEventTypes(t *testing.T) {
	e := newEnv(t, projection.Config{})
	p := &totals{name: uniqueName(t, "types"), version: 1}
	require.NoError(t, e.mgr.Register(p))
	ctx := context.Background()
	require.NoError(t, e.mgr.Reset(ctx, p.Name()))
	var last eventstore.AppendResult
	for i := range 3 {
		_, err := e.store.Append(ctx, "acct-1", eventstore.Any, []eventstore.Event{added(i)})
		require.NoError(t, err)
		last, err = e.store.Append(ctx, "other-1", eventstore.Any, []eventstore.Event{{Type: "Ignored", Data: []byte(`{}`)}})
		require.NoError(t, err)
	}
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		head, err := e.store.Head(ctx)
		require.NoError(c, err)
		assert.False(c, head.Before(last.Position), "the head is held back")
	}, progressWait, pollEvery)

	mine := status(t, e.mgr, p.Name())
	require.Equal(t, int64(3), mine.Lag)
	require.False(t, mine.LagTypesUnknown)

	other := pgtest.Manager(t, mustStore(t, e), projection.Config{Logger: quietLog})
	t.Cleanup(other.Close)
	theirs := status(t, other, p.Name())
	require.False(t, theirs.Registered)
	require.Equal(t, int64(6), theirs.Lag, "every event after the checkpoint")
	require.True(t, theirs.LagTypesUnknown)

	names, err := other.KnownNames(ctx)
	require.NoError(t, err)
	require.Equal(t, []string{p.Name()}, names, "the database's projections")
	require.NoError(t, other.Register(&totals{name: "a_" + p.Name(), version: 1}))
	names, err = other.KnownNames(ctx)
	require.NoError(t, err)
	require.Equal(t, []string{"a_" + p.Name(), p.Name()}, names, "registered ones too, sorted")
}

// mustStore is a second store on the environment's schema, as another
// binary would open it.
func mustStore(t *testing.T, e env) *postgres.Store {
	store, err := postgres.New(e.store.Pool(), postgres.Config{Schema: e.store.Schema(), Logger: quietLog})
	require.NoError(t, err)
	t.Cleanup(store.Close)
	return store
}
