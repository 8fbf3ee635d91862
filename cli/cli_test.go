package cli_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
	"github.com/stretchr/testify/require"

	"github.com/cairn-es/cairn/app"
	"github.com/cairn-es/cairn/cli"
	"github.com/cairn-es/cairn/eventstore"
	"github.com/cairn-es/cairn/internal/pgtest"
	"github.com/cairn-es/cairn/projection"
	"github.com/cairn-es/cairn/retry"
)

func TestMigrateStatusAndUpAreIdempotent(t *testing.T) {
	h := newHarness(t)
	fresh := fmt.Sprintf("t_%x", pgtest.Suffix())
	pgtest.DropSchemas(t, h.pool, fresh)

	readStatus := func() map[string]any {
		var st map[string]any
		require.NoError(t, json.Unmarshal([]byte(h.ok("migrate", "status", "--schema", fresh, "--json")), &st))
		return st
	}
	before := readStatus()
	require.Equal(t, fresh, before["schema"])
	require.Equal(t, 0.0, before["current"])
	require.Equal(t, false, before["up_to_date"])
	latest := before["latest"].(float64)
	require.Positive(t, latest)
	require.Contains(t, h.ok("migrate", "status", "--schema", fresh), "pending; run 'app migrate up'")

	require.Equal(t, fmt.Sprintf("schema %s: migrated from version 0 to %v\n", fresh, latest), h.ok("migrate", "up", "--schema", fresh))
	require.Equal(t, fmt.Sprintf("schema %s: up to date at version %v\n", fresh, latest), h.ok("migrate", "up", "--schema", fresh))

	after := readStatus()
	require.Equal(t, latest, after["current"])
	require.Equal(t, true, after["up_to_date"])
	require.Equal(t, fmt.Sprintf("schema %s: version %v of %v, up to date\n", fresh, latest, latest), h.ok("migrate", "status", "--schema", fresh))
}

func TestUnreachableDatabaseAndUnmigratedSchemaFailClearly(t *testing.T) {
	h := newHarness(t)
	r := h.run("migrate", "status", "--database-url", "postgres://postgres@127.0.0.1:1/postgres?connect_timeout=5")
	require.ErrorIs(t, r.e, cli.ErrUnreachable)
	require.Equal(t, 1, cli.ExitCode(r.e))
	require.Contains(t, r.err, "Error: PostgreSQL is not reachable at 127.0.0.1:1")
	require.Empty(t, r.out)

	r = h.run("events", "read", "order-1", "--schema", fmt.Sprintf("t_%x", pgtest.Suffix()))
	require.ErrorIs(t, r.e, cli.ErrNotMigrated)
	require.Contains(t, r.err, "run 'app migrate up' first")

	r = h.run("migrate", "status", "--schema", "Bad-Schema")
	require.Error(t, r.e)
	require.Equal(t, 1, cli.ExitCode(r.e))
}

func TestUsageErrorsExitWithTwo(t *testing.T) {
	h := newHarness(t)
	for _, args := range [][]string{
		{"projection", "bogus"},
		{"projectoin"},
		{"projection", "status", "a", "b"},
		{"projection", "rebuild"},
		{"projection", "rebuild", "x", "--in-place", "--verify"},
		{"projection", "retry", "x"},
		{"projection", "retry", "x", "--all", "3"},
		{"projection", "retry", "x", "seven"},
		{"events", "read", "--unknown-flag", "s"},
		{"events", "tail", "--from", "nonsense"},
		{"migrate", "up", "extra"},
	} {
		r := h.run(args...)
		require.Error(t, r.e, "%v", args)
		require.Equal(t, 2, cli.ExitCode(r.e), "%v: %v", args, r.e)
		require.Contains(t, r.err, "Error: ", "%v", args)
		require.Contains(t, r.err, "--help' for usage", "%v", args)
	}
	require.Contains(t, h.run("projectoin").err, `did you mean "projection"?`)
	// A group alone prints its help.
	require.Contains(t, h.ok("projection"), "rebuild")
}

func TestExitCode(t *testing.T) {
	require.Equal(t, 0, cli.ExitCode(nil))
	require.Equal(t, 1, cli.ExitCode(errors.New("boom")))
	require.Equal(t, 2, cli.ExitCode(fmt.Errorf("x: %w", &cli.UsageError{Err: errors.New("bad flag")})))
	require.Equal(t, 3, cli.ExitCode(fmt.Errorf("x: %w", cli.ErrModelsDiffer)))
}

// An application's own command refuses its arguments as the framework's
// do: a usage error naming where its help is.
func TestUsagef(t *testing.T) {
	root := &cobra.Command{Use: "shop"}
	greet := &cobra.Command{Use: "greet"}
	root.AddCommand(greet)
	err := cli.Usagef(greet, "greet: %q is not a name", "?")
	var usage *cli.UsageError
	require.ErrorAs(t, err, &usage)
	require.Equal(t, 2, cli.ExitCode(err))
	require.EqualError(t, err, "greet: \"?\" is not a name\nRun 'shop greet --help' for usage.")
}

func TestEventsRead(t *testing.T) {
	h := newHarness(t)
	first := h.append("order-1", eventstore.Event{Type: "OrderPlaced", Data: []byte(`{"total": 1200}`),
		Metadata: eventstore.Metadata{CorrelationID: "corr-1"}})
	second := h.append("order-1", eventstore.Event{Type: "ItemAdded", Data: []byte(`{"sku":"a"}`)},
		eventstore.Event{Type: "ItemAdded", SchemaVersion: 2, Data: []byte(`{"sku":"b"}`)})

	decode := func(out string) []cli.EventJSON {
		var events []cli.EventJSON
		for line := range strings.Lines(out) {
			var e cli.EventJSON
			require.NoError(t, json.Unmarshal([]byte(line), &e), line)
			events = append(events, e)
		}
		return events
	}
	versions := func(events []cli.EventJSON) []int64 {
		var v []int64
		for _, e := range events {
			v = append(v, e.Version)
		}
		return v
	}

	all := decode(h.ok("events", "read", "order-1", "--json"))
	require.Equal(t, []int64{1, 2, 3}, versions(all))
	require.Equal(t, first.Position, all[0].Position)
	require.Equal(t, second.Position, all[2].Position)
	require.Equal(t, "order-1", all[0].StreamID)
	require.Equal(t, "OrderPlaced", all[0].Type)
	require.JSONEq(t, `{"total": 1200}`, string(all[0].Data))
	require.Equal(t, "corr-1", all[0].Metadata.CorrelationID)
	require.Nil(t, all[1].Metadata)
	require.Equal(t, 2, all[2].SchemaVersion)
	require.False(t, all[0].RecordedAt.IsZero())

	require.Equal(t, []int64{3, 2}, versions(decode(h.ok("events", "read", "order-1", "--json", "--backward", "--limit", "2"))))
	require.Equal(t, []int64{2, 3}, versions(decode(h.ok("events", "read", "order-1", "--json", "--from", "2"))))
	require.Equal(t, []int64{2, 1}, versions(decode(h.ok("events", "read", "order-1", "--json", "--backward", "--from", "2"))))

	human := h.ok("events", "read", "order-1")
	lines := strings.Split(strings.TrimSpace(human), "\n")
	require.Len(t, lines, 3)
	require.Contains(t, lines[0], first.Position.String()+"  order-1@1  ")
	require.Contains(t, lines[0], `OrderPlaced  {"total":1200}`)
	require.Contains(t, lines[2], `ItemAdded/v2  {"sku":"b"}`)

	r := h.run("events", "read", "order-2")
	require.ErrorIs(t, r.e, eventstore.ErrStreamNotFound)
	require.Equal(t, 1, cli.ExitCode(r.e))
	require.Contains(t, r.err, `stream "order-2" not found`)
}

func TestEventsTailFollowsTheLiveLogUntilCancelled(t *testing.T) {
	h := newHarness(t)
	before := h.append("acct-0", added(0)) // not printed: tail starts after it
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	tailCtx, stop := context.WithCancel(ctx)
	var out, errOut syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- h.exec(tailCtx, h.cfg, &out, &errOut, "events", "tail", "--from", before.Position.String(), "--json", "--type", "Added")
	}()

	const n = 5
	var want []eventstore.Position
	for i := range n {
		want = append(want, h.append(fmt.Sprintf("acct-%d", i+1), added(i+1)).Position)
		h.append("other-1", eventstore.Event{Type: "Ignored", Data: []byte(`{}`)}) // filtered out
	}
	require.Eventually(t, func() bool { return strings.Count(out.String(), "\n") >= n }, 30*time.Second, 10*time.Millisecond,
		"tail printed:\n%s\nstderr:\n%s", &out, &errOut)
	stop()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("events tail did not stop when cancelled")
	}

	var got []eventstore.Position
	for line := range strings.Lines(out.String()) {
		var e cli.EventJSON
		require.NoError(t, json.Unmarshal([]byte(line), &e))
		require.Equal(t, "Added", e.Type)
		got = append(got, e.Position)
	}
	require.Equal(t, want, got)
	require.Contains(t, errOut.String(), "following the log after position "+before.Position.String())
}

func TestProjectionStatusRebuildAndVerify(t *testing.T) {
	p := newTally(t)
	h := newHarness(t, p)
	var last eventstore.AppendResult
	for i := range 30 {
		last = h.append(fmt.Sprintf("acct-%d", i%3), added(i))
	}
	h.readable(h.append("other-1", eventstore.Event{Type: "Ignored", Data: []byte(`{}`)}).Position)

	require.Contains(t, h.ok("projection", "list"), p.Name())

	// Before anything ran: registered, new, everything to do.
	st := h.status(p.Name())
	require.Equal(t, p.Name(), st.Name)
	require.True(t, st.Registered)
	require.Equal(t, projection.State("new"), st.State)
	require.Equal(t, int64(30), st.Lag)

	// A blue/green rebuild, with progress as log lines (stderr is no terminal).
	r := h.run("projection", "rebuild", p.Name(), "--progress-interval", "0s")
	require.NoError(t, r.e, r.err)
	require.Contains(t, r.out, "rebuilt "+p.Name()+" (shadow): 30 events up to position "+last.Position.String())
	require.Contains(t, r.err, "rebuild "+p.Name()+": 30/30 events (100.0%)")
	require.Contains(t, r.err, "events/s")
	require.Equal(t, map[string][2]int64{"acct-0": {135, 10}, "acct-1": {145, 10}, "acct-2": {155, 10}}, h.modelRows(p.Name()))

	// The JSON status carries the documented fields.
	raw := h.ok("projection", "status", p.Name(), "--json")
	var fields map[string]any
	require.NoError(t, json.Unmarshal([]byte(raw), &fields))
	for _, key := range []string{"name", "registered", "version", "state", "policy", "checkpoint", "head", "lag_events", "since_last_applied_seconds", "events_applied", "dead_letters"} {
		require.Contains(t, fields, key)
	}
	require.Equal(t, last.Position.String(), fields["checkpoint"])
	st = h.status(p.Name())
	require.Equal(t, projection.Running, st.State)
	require.Equal(t, last.Position, st.Checkpoint)
	require.Equal(t, int64(0), st.Lag)
	require.Equal(t, int64(30), st.EventsApplied)
	require.Equal(t, 1, st.Version)
	require.Equal(t, "stop", st.Policy)

	var list []projection.Status
	require.NoError(t, json.Unmarshal([]byte(h.ok("projection", "status", "--json")), &list))
	require.Len(t, list, 1)
	human := h.ok("projection", "status")
	require.Contains(t, human, "CHECKPOINT")
	require.Regexp(t, p.Name()+`\s+running\s+1\s+`+last.Position.String(), human)

	// Verify: no differences, exit 0.
	out := h.ok("projection", "rebuild", p.Name(), "--verify", "--progress", "none")
	require.Contains(t, out, "verified "+p.Name()+": the live model matches a fresh rebuild of 30 events")

	// Tamper with the live model: verify reports the difference, exit 3.
	_, err := h.pool.Exec(context.Background(), "UPDATE "+p.Name()+".tally SET total = total + 1 WHERE stream_id = 'acct-1'")
	require.NoError(t, err)
	r = h.run("projection", "rebuild", p.Name(), "--verify", "--json", "--progress", "none")
	require.ErrorIs(t, r.e, cli.ErrModelsDiffer)
	require.Equal(t, 3, cli.ExitCode(r.e))
	require.Contains(t, r.err, "Error: "+p.Name()+": the live model differs from a fresh rebuild")
	var report projection.RebuildReport
	require.NoError(t, json.Unmarshal([]byte(r.out), &report))
	require.Equal(t, "verify", report.Mode)
	require.Len(t, report.Differences, 1)
	require.Equal(t, "tally", report.Differences[0].Table)
	require.Equal(t, int64(1), report.Differences[0].OnlyLive)
	require.Equal(t, int64(1), report.Differences[0].OnlyRebuilt)
	r = h.run("projection", "rebuild", p.Name(), "--verify", "--progress", "none")
	require.ErrorIs(t, r.e, cli.ErrModelsDiffer)
	require.Contains(t, r.out, "table tally: 1 row only in the live model, 1 row only in the rebuilt one")
	require.Contains(t, r.out, `live: {"stream_id":"acct-1","total":146`)

	// An in-place rebuild repairs it, with a progress bar when asked for one.
	r = h.run("projection", "rebuild", p.Name(), "--in-place", "--progress", "bar")
	require.NoError(t, r.e, r.err)
	require.Contains(t, r.out, "rebuilt "+p.Name()+" (in-place): 30 events")
	require.Contains(t, r.err, "rebuild "+p.Name())
	require.Contains(t, r.err, "100%")
	require.Contains(t, h.ok("projection", "rebuild", p.Name(), "--verify", "--progress", "none"), "matches a fresh rebuild")
}

func TestPauseResumeAndReset(t *testing.T) {
	p := newTally(t)
	h := newHarness(t, p)
	h.readable(h.append("acct-1", added(4)).Position)

	require.Contains(t, h.ok("projection", "reset", p.Name()), "reset "+p.Name())
	st := h.status(p.Name())
	require.Equal(t, projection.Running, st.State)
	require.Equal(t, eventstore.Start, st.Checkpoint)
	require.Equal(t, int64(1), st.Lag)

	require.Equal(t, "paused "+p.Name()+"\n", h.ok("projection", "pause", p.Name()))
	require.Equal(t, projection.Paused, h.status(p.Name()).State)
	require.Regexp(t, p.Name()+`\s+paused`, h.ok("projection", "status"))

	require.Equal(t, "resumed "+p.Name()+"\n", h.ok("projection", "resume", p.Name()))
	require.Equal(t, projection.Running, h.status(p.Name()).State)
}

func TestUnknownProjectionFails(t *testing.T) {
	p := newTally(t)
	h := newHarness(t, p)
	for _, args := range [][]string{
		{"projection", "status", "nope"},
		{"projection", "rebuild", "nope"},
		{"projection", "reset", "nope"},
		{"projection", "pause", "nope"},
		{"projection", "resume", "nope"},
		{"projection", "dead-letters", "nope"},
		{"projection", "retry", "nope", "--all"},
	} {
		r := h.run(args...)
		require.ErrorIs(t, r.e, projection.ErrUnknownProjection, "%v", args)
		require.Equal(t, 1, cli.ExitCode(r.e))
		require.Contains(t, r.err, `unknown projection: "nope"`, "%v", args)
		require.Empty(t, r.out, "%v", args)
	}
}

func TestDeadLettersAndRetry(t *testing.T) {
	p := newTally(t)
	p.poisoned.Store(true)
	h := newHarness(t, p)
	h.cfg.Projection = projection.Config{
		Policy: projection.PolicyDeadLetter,
		Retry:  retry.Policy{MaxAttempts: 2, BaseDelay: time.Millisecond, MaxDelay: 5 * time.Millisecond},
	}
	h.append("acct-1", added(1))
	h.append("acct-2", eventstore.Event{Type: "Added", Data: []byte(`{"amount": 5, "poison": true}`)})
	last := h.append("acct-1", added(2))

	// Run the daemon until it has dead-lettered the poisoned event and
	// moved past it; then stop it as SIGINT would.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	runCtx, stop := context.WithCancel(ctx)
	var out, errOut syncBuffer
	done := make(chan error, 1)
	go func() { done <- h.exec(runCtx, h.cfg, &out, &errOut, "projection", "run") }()
	require.Eventually(t, func() bool {
		r := h.run("projection", "status", p.Name(), "--json")
		var st projection.Status
		return r.e == nil && json.Unmarshal([]byte(r.out), &st) == nil && st.Checkpoint == last.Position
	}, 30*time.Second, 50*time.Millisecond, "stderr of run:\n%s", &errOut)
	stop()
	select {
	case err := <-done:
		require.NoError(t, err, errOut.String())
	case <-time.After(15 * time.Second):
		t.Fatal("projection run did not stop when cancelled")
	}
	require.Contains(t, errOut.String(), "running 1 projection: "+p.Name())
	require.Contains(t, errOut.String(), "stopped")
	require.Equal(t, map[string][2]int64{"acct-1": {3, 2}}, h.modelRows(p.Name()))

	var letters []projection.DeadLetter
	require.NoError(t, json.Unmarshal([]byte(h.ok("projection", "dead-letters", p.Name(), "--json")), &letters))
	require.Len(t, letters, 1)
	d := letters[0]
	require.Equal(t, "acct-2", d.StreamID)
	require.Equal(t, int64(1), d.StreamVersion)
	require.Equal(t, "Added", d.EventType)
	require.Equal(t, 2, d.Attempts)
	require.Contains(t, d.Error, "poisoned event acct-2@1")
	require.Equal(t, int64(1), h.status(p.Name()).DeadLetters)

	human := h.ok("projection", "dead-letters", p.Name())
	require.Contains(t, human, "acct-2@1")
	require.Contains(t, human, "poisoned event")

	// Still poisoned: the retry fails, is recorded, and exits 1.
	r := h.run("projection", "retry", p.Name(), "--all")
	require.Error(t, r.e)
	require.Equal(t, 1, cli.ExitCode(r.e))
	require.Contains(t, r.err, "Error: projection "+p.Name()+": applying Added acct-2@1")
	require.Contains(t, r.err, "poisoned event acct-2@1")
	require.NoError(t, json.Unmarshal([]byte(h.ok("projection", "dead-letters", p.Name(), "--json")), &letters))
	require.Equal(t, 3, letters[0].Attempts)

	// Fixed: retrying its ID applies it and removes the dead letter.
	p.poisoned.Store(false)
	require.Equal(t, "retried 1 dead letter of "+p.Name()+"\n", h.ok("projection", "retry", p.Name(), fmt.Sprint(d.ID)))
	require.Equal(t, "[]\n", h.ok("projection", "dead-letters", p.Name(), "--json"))
	require.Contains(t, h.ok("projection", "dead-letters", p.Name()), "has no dead letters")
	require.Equal(t, map[string][2]int64{"acct-1": {3, 2}, "acct-2": {5, 1}}, h.modelRows(p.Name()))

	r = h.run("projection", "retry", p.Name(), fmt.Sprint(d.ID))
	require.ErrorIs(t, r.e, projection.ErrNotDeadLettered)
}

func TestWithoutSetupOnlyDatabaseCommandsExist(t *testing.T) {
	p := newTally(t)
	h := newHarness(t, p)
	h.append("acct-1", added(1))
	h.ok("projection", "reset", p.Name()) // the database now knows the projection

	bare := app.CLI("cairn", nil) // what cmd/cairn runs
	for _, sub := range []string{"rebuild", "reset", "run"} {
		r := h.runWith(bare, "projection", sub, p.Name())
		require.Equal(t, 2, cli.ExitCode(r.e), "%s: %v", sub, r.e)
		require.Contains(t, r.err, "unknown command")
	}
	r := h.runWith(bare, "projection", "status", "--json")
	require.NoError(t, r.e, r.err)
	var list []projection.Status
	require.NoError(t, json.Unmarshal([]byte(r.out), &list))
	require.Len(t, list, 1)
	require.Equal(t, p.Name(), list[0].Name)
	require.False(t, list[0].Registered)
	require.Equal(t, projection.Running, list[0].State)

	r = h.runWith(bare, "projection", "pause", p.Name())
	require.NoError(t, r.e, r.err)
	require.Equal(t, projection.Paused, h.status(p.Name()).State)
	r = h.runWith(bare, "projection", "list")
	require.NoError(t, r.e, r.err)
	require.Regexp(t, p.Name()+`\s+1\s+paused\s+-\s+\(not registered here\)`, r.out)

	// The application's status marks projections it does not register.
	other := &tally{name: p.Name()[:len(p.Name())-1] + "x"}
	pgtest.DropModels(t, h.pool, other.Name())
	cfg := h.cfg
	cfg.Setup = func(ctx context.Context, m *projection.Manager) error { return m.Register(other) }
	r = h.runWith(cfg, "projection", "status")
	require.NoError(t, r.e, r.err)
	require.Contains(t, r.out, p.Name()+" *")
	require.Contains(t, r.out, "* not registered in this application")
}

func TestRootHelpExitStatusMentionsRebuildOnlyWithProjections(t *testing.T) {
	for _, setup := range []bool{false, true} {
		cfg := cli.Config{}
		if setup {
			cfg.Setup = func(context.Context, *projection.Manager) error { return nil }
		}
		got := strings.Contains(cli.New(cfg).Long, "3 rebuild --verify")
		require.Equal(t, setup, got, "Setup set: %v", setup)
	}
}

// A command line without the projection's code (cmd/cairn's, or one
// without an integration publisher) retries a dead letter by asking the
// process that runs the projection, and says what became of it.
func TestRetryOfAProjectionRunElsewhere(t *testing.T) {
	p := newTally(t)
	p.poisoned.Store(true)
	h := newHarness(t, p)
	h.cfg.Projection = projection.Config{
		Policy: projection.PolicyDeadLetter,
		Retry:  retry.Policy{MaxAttempts: 2, BaseDelay: time.Millisecond, MaxDelay: 5 * time.Millisecond},
	}
	h.append("acct-1", added(1))
	h.append("acct-2", eventstore.Event{Type: "Added", Data: []byte(`{"amount": 5, "poison": true}`)})
	last := h.append("acct-1", added(2))

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	// run runs the daemon, the process that has the projection's code,
	// until the returned function stops it.
	run := func() func() {
		runCtx, stop := context.WithCancel(ctx)
		var out, errOut syncBuffer
		done := make(chan error, 1)
		go func() { done <- h.exec(runCtx, h.cfg, &out, &errOut, "projection", "run") }()
		return func() {
			stop()
			select {
			case err := <-done:
				require.NoError(t, err, errOut.String())
			case <-time.After(15 * time.Second):
				t.Fatal("projection run did not stop when cancelled")
			}
		}
	}
	stop := run()
	require.Eventually(t, func() bool { return h.status(p.Name()).Checkpoint == last.Position }, 30*time.Second, 50*time.Millisecond)
	stop()
	require.Equal(t, int64(1), h.status(p.Name()).DeadLetters)

	bare := app.CLI("cairn", nil)
	// Nobody runs the projection: the request waits, and says so.
	r := h.runWith(bare, "projection", "retry", p.Name(), "--all", "--wait", "300ms")
	require.ErrorIs(t, r.e, cli.ErrRetryPending)
	require.Equal(t, 1, cli.ExitCode(r.e))
	require.Contains(t, r.out, "asked the process running "+p.Name()+" to retry 1 dead letter")

	// The daemon starts, takes the request; still poisoned, the retry fails.
	stop = run()
	defer func() { stop() }()
	require.Eventually(t, func() bool {
		var letters []projection.DeadLetter
		return json.Unmarshal([]byte(h.ok("projection", "dead-letters", p.Name(), "--json")), &letters) == nil &&
			len(letters) == 1 && letters[0].Attempts == 3
	}, 30*time.Second, 50*time.Millisecond, "the pending request was taken and the retry recorded")
	r = h.runWith(bare, "projection", "retry", p.Name(), "--all")
	require.Error(t, r.e)
	require.Contains(t, r.e.Error(), "1 still dead-lettered")
	require.Contains(t, r.e.Error(), "poisoned event acct-2@1")

	// Fixed: the process running it applies it.
	p.poisoned.Store(false)
	var letters []projection.DeadLetter
	require.NoError(t, json.Unmarshal([]byte(h.ok("projection", "dead-letters", p.Name(), "--json")), &letters))
	r = h.runWith(bare, "projection", "retry", p.Name(), fmt.Sprint(letters[0].ID))
	require.NoError(t, r.e, r.err)
	require.Contains(t, r.out, "retried 1 dead letter of "+p.Name())
	require.Equal(t, "[]\n", h.ok("projection", "dead-letters", p.Name(), "--json"))
	require.Equal(t, map[string][2]int64{"acct-1": {3, 2}, "acct-2": {5, 1}}, h.modelRows(p.Name()))

	r = h.runWith(bare, "projection", "retry", "no_such_projection", "--all")
	require.ErrorIs(t, r.e, projection.ErrUnknownProjection)
}
