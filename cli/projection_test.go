package cli_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cairn-es/cairn/app"
	"github.com/cairn-es/cairn/cli"
	"github.com/cairn-es/cairn/eventstore"
	"github.com/cairn-es/cairn/internal/pgtest"
	"github.com/cairn-es/cairn/projection"
)

// projection status says whether a process runs the projection: "none"
// with a note while nothing does (its state still says running), the
// runner's session while "projection run" holds it.
func TestStatusShowsWhetherARunnerHoldsTheProjection(t *testing.T) {
	p := newTally(t)
	h := newHarness(t, p)
	h.readable(h.append("acct-1", added(4)).Position)
	h.ok("projection", "reset", p.Name()) // known to the database, running, run by nobody

	st := h.status(p.Name())
	require.Equal(t, projection.Running, st.State)
	require.Nil(t, st.Runner)
	human := h.ok("projection", "status")
	require.Regexp(t, p.Name()+`\s+running\s+.*\s+none\n`, human)
	require.Contains(t, human, "no runner holds "+p.Name()+": nothing applies its events")
	var fields map[string]any
	require.NoError(t, json.Unmarshal([]byte(h.ok("projection", "status", p.Name(), "--json")), &fields))
	require.Contains(t, fields, "runner")
	require.Nil(t, fields["runner"], "JSON says null when no runner holds it")

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	runCtx, stop := context.WithCancel(ctx)
	var out, errOut syncBuffer
	done := make(chan error, 1)
	go func() { done <- h.exec(runCtx, h.cfg, &out, &errOut, "projection", "run") }()
	defer func() {
		stop()
		require.NoError(t, <-done, errOut.String())
	}()
	// The condition runs on a goroutine of its own: it reports to c, never
	// to t (as h.status would).
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		r := h.run("projection", "status", p.Name(), "--json")
		require.NoError(c, r.e, r.err)
		var st projection.Status
		require.NoError(c, json.Unmarshal([]byte(r.out), &st))
		assert.NotNil(c, st.Runner, "no runner reported")
	}, 30*time.Second, 50*time.Millisecond, "stderr of run:\n%s", &errOut)
	st = h.status(p.Name())
	require.Positive(t, st.Runner.BackendPID)
	human = h.ok("projection", "status")
	require.Contains(t, human, st.Runner.String())
	require.NotContains(t, human, "no runner holds")
}

// The framework's binary (no projections registered) counts every event
// after the checkpoint, the application's only the projection's types: the
// figures differ, and the framework's output says why.
func TestStatusLagOfTheFrameworkBinarySaysWhyItDiffers(t *testing.T) {
	p := newTally(t)
	h := newHarness(t, p)
	h.ok("projection", "reset", p.Name())
	var last eventstore.AppendResult
	for i := range 3 {
		h.append("acct-1", added(i))
		last = h.append("other-1", eventstore.Event{Type: "Ignored", Data: []byte(`{}`)})
	}
	h.readable(last.Position)

	own := h.status(p.Name())
	require.Equal(t, int64(3), own.Lag, "the application counts its projection's types")
	require.False(t, own.LagTypesUnknown)
	require.NotContains(t, h.ok("projection", "status"), "lag counts every event")

	bare := app.CLI("cairn", nil) // what cmd/cairn runs
	r := h.runWith(bare, "projection", "status", p.Name(), "--json")
	require.NoError(t, r.e, r.err)
	var st projection.Status
	require.NoError(t, json.Unmarshal([]byte(r.out), &st))
	require.Equal(t, int64(6), st.Lag, "the framework's binary counts every event")
	require.True(t, st.LagTypesUnknown)
	r = h.runWith(bare, "projection", "status")
	require.NoError(t, r.e, r.err)
	require.Contains(t, r.out, "lag counts every event after each checkpoint: this binary registers no projections, so it does not know their event types")
	require.NotContains(t, r.out, p.Name()+" *", "every row would carry the mark: the note covers them all")
}

// An unknown projection's error lists the names that would have worked:
// those the database knows too for the commands that work on them, only
// the registered ones for those that need the projector's code.
func TestUnknownProjectionListsTheValidNames(t *testing.T) {
	p := newTally(t)
	h := newHarness(t, p)
	dbOnly := &tally{name: "a" + p.Name()} // sorts first; known to the database, registered elsewhere
	pgtest.DropModels(t, h.pool, dbOnly.Name())
	elsewhere := h.cfg
	elsewhere.Setup = func(_ context.Context, m *projection.Manager) error { return m.Register(dbOnly) }
	require.NoError(t, h.runWith(elsewhere, "projection", "reset", dbOnly.Name()).e)
	h.ok("projection", "reset", p.Name()) // the database knows both

	known := fmt.Sprintf(`unknown projection: "nope"; known projections: %s, %s`, dbOnly.Name(), p.Name())
	registered := `unknown projection: "nope"; projections registered in this application: ` + p.Name()
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"status", "nope"}, known},
		{[]string{"pause", "nope"}, known},
		{[]string{"resume", "nope"}, known},
		{[]string{"dead-letters", "nope"}, known},
		{[]string{"rebuild", "nope"}, registered},
		{[]string{"reset", "nope"}, registered},
		{[]string{"retry", "nope", "--all"}, registered},
	} {
		r := h.run(append([]string{"projection"}, c.args...)...)
		require.ErrorIs(t, r.e, projection.ErrUnknownProjection, "%v", c.args)
		require.Equal(t, 1, cli.ExitCode(r.e))
		require.Contains(t, r.err, c.want, "%v", c.args)
		require.Empty(t, r.out, "%v", c.args)
	}

	// The framework's binary knows the database's projections only.
	r := h.runWith(app.CLI("cairn", nil), "projection", "pause", "nope")
	require.ErrorIs(t, r.e, projection.ErrUnknownProjection)
	require.Contains(t, r.err, known)

	// Nothing anywhere: it says so rather than listing nothing.
	empty := newHarness(t)
	r = empty.runWith(app.CLI("cairn", nil), "projection", "status", "nope")
	require.ErrorIs(t, r.e, projection.ErrUnknownProjection)
	require.Contains(t, r.err, `unknown projection: "nope"; no projection is registered in this application or known to the database`)
	require.False(t, strings.Contains(r.err, "known projections:"))
}
