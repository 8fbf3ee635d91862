package command_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/cairn-es/cairn/command"
	"github.com/cairn-es/cairn/eventstore/postgres"
	"github.com/cairn-es/cairn/internal/pgtest"
)

// TestConcurrentDispatchRunsOncePostgres runs the single-execution proof
// against PostgreSQL, where the 50 submissions race on separate connections
// and the store's command record, written in the events' transaction, is what
// keeps the command from applying twice.
func TestConcurrentDispatchRunsOncePostgres(t *testing.T) {
	pool := pgtest.Pool(t, 20) // fewer connections than submissions: they still race, and CI shares the server
	store, err := postgres.New(pool, postgres.Config{Schema: pgtest.Schema(t, pool)})
	require.NoError(t, err)
	t.Cleanup(store.Close)
	for range 5 {
		proveSingleExecution(t, store)
		proveSingleExecution(t, store, command.AppendOnly())
	}
}
