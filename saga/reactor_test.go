package saga_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/cairn-es/cairn/eventstore"
	"github.com/cairn-es/cairn/projection"
	"github.com/cairn-es/cairn/saga"
)

func TestReactorHandlesEachEventOnceEvenWhenItsCheckpointMovesBack(t *testing.T) {
	e := newEnv(t)
	sagaName, reactorName := uniqueName("steps"), uniqueName("notes")
	notes := saga.NewReactor(reactorName, e.registry, saga.ReactorConfig{Setup: func(ctx context.Context, tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `CREATE TABLE sent (event_id uuid PRIMARY KEY, job_id text NOT NULL, n int NOT NULL)`)
		return err
	}})
	// A plain INSERT: a second delivery of an event would fail on the key.
	saga.React(notes, func(ctx context.Context, tx pgx.Tx, s StepDone, rec eventstore.RecordedEvent) error {
		_, err := tx.Exec(ctx, `INSERT INTO sent (event_id, job_id, n) VALUES ($1, $2, $3)`, rec.ID, s.JobID, s.N)
		return err
	})
	r := e.start(saga.Config{}, func(m *saga.Manager) {
		m.MustRegister(e.stepsSaga(sagaName))
		m.MustRegisterReactor(notes)
	})
	e.dispatch(Start{JobID: "n", Steps: 3})
	e.awaitEnded(sagaName, "n")
	ctx := context.Background()
	head, err := e.store.Head(ctx)
	require.NoError(t, err)
	waitCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	require.NoError(t, r.projections.WaitFor(waitCtx, head, reactorName))
	count := func() int {
		var n int
		require.NoError(t, e.store.Pool().QueryRow(ctx, `SELECT count(*) FROM `+pgx.Identifier{reactorName, "sent"}.Sanitize()).Scan(&n))
		return n
	}
	require.Equal(t, 3, count())

	// Move the checkpoint back to the start: the daemon delivers every
	// event again, and the reactor recognises each.
	_, err = e.store.Pool().Exec(ctx, `UPDATE `+pgx.Identifier{reactorName, "cairn_checkpoint"}.Sanitize()+` SET pos_tx = '0', pos_seq = 0`)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		st, err := r.projections.Status(ctx, reactorName)
		require.NoError(t, err)
		require.NotEqual(t, projection.Failed, st.State, st.Error)
		return st.Checkpoint == head
	}, 30*time.Second, 20*time.Millisecond)
	require.Equal(t, 3, count())
	st, err := r.projections.Status(ctx, reactorName)
	require.NoError(t, err)
	require.Equal(t, projection.Running, st.State)
}
