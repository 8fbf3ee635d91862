package projection_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cairn-es/cairn/eventstore"
	"github.com/cairn-es/cairn/projection"
	"github.com/cairn-es/cairn/retry"
)

// logRecord is one captured log record: its level, message and attributes
// (those of the record, not of the logger's With).
type logRecord struct {
	level slog.Level
	msg   string
	attrs map[string]string
}

// logCapture is a slog handler keeping every record, for tests of what the
// runner tells its operator.
type logCapture struct {
	mu      sync.Mutex
	records []logRecord
}

func (c *logCapture) Enabled(context.Context, slog.Level) bool { return true }
func (c *logCapture) WithAttrs([]slog.Attr) slog.Handler       { return c }
func (c *logCapture) WithGroup(string) slog.Handler            { return c }
func (c *logCapture) Handle(_ context.Context, r slog.Record) error {
	rec := logRecord{level: r.Level, msg: r.Message, attrs: map[string]string{}}
	r.Attrs(func(a slog.Attr) bool {
		rec.attrs[a.Key] = a.Value.String()
		return true
	})
	c.mu.Lock()
	defer c.mu.Unlock()
	c.records = append(c.records, rec)
	return nil
}

// with returns the records whose message is msg.
func (c *logCapture) with(msg string) []logRecord {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []logRecord
	for _, r := range c.records {
		if r.msg == msg {
			out = append(out, r)
		}
	}
	return out
}

// dump is every record, for failure messages.
func (c *logCapture) dump() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var b strings.Builder
	for _, r := range c.records {
		fmt.Fprintf(&b, "%s %s %v\n", r.level, r.msg, r.attrs)
	}
	return b.String()
}

// waitLog waits until a record with message msg is logged and returns it.
func waitLog(t *testing.T, logs *logCapture, msg string) logRecord {
	t.Helper()
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		assert.NotEmpty(c, logs.with(msg), "no %q logged; the log:\n%s", msg, logs.dump())
	}, progressWait, pollEvery)
	return logs.with(msg)[0]
}

// An event that fails twice and then applies is retried with a warning and
// its recovery logged at Info; an event that keeps failing stops the
// projection with one Error, and its resumption is logged.
func TestRunnerLogsRetriesStopsAndResumes(t *testing.T) {
	logs := &logCapture{}
	e := newEnv(t, projection.Config{BatchSize: 5, Retry: fastRetry, LeaderRetry: 50 * time.Millisecond, Logger: slog.New(logs)})
	var flaky atomic.Int32
	var broken atomic.Bool
	broken.Store(true)
	p := &totals{name: uniqueName(t, "flaky"), version: 1, fail: func(ev eventstore.RecordedEvent) error {
		switch {
		case ev.StreamID == "flaky" && flaky.Add(1) <= 2:
			return errors.New("flaky: try again")
		case ev.StreamID == "bad" && broken.Load():
			return errors.New("boom: cannot apply this one")
		}
		return nil
	}}
	require.NoError(t, e.mgr.Register(p))
	ctx := context.Background()
	l := newLedger()
	l.add(ctx, t, e.store, "flaky", 5)
	run := startRunner(t, e.mgr)
	_, last, _ := l.snapshot()
	waitFor(t, e.mgr, last, progressWait, p.Name())

	retrying := logs.with("cairn: applying an event failed; retrying")
	require.Len(t, retrying, 1, logs.dump())
	require.Equal(t, slog.LevelWarn, retrying[0].level)
	require.Contains(t, retrying[0].attrs["event"], "Added flaky@1")
	require.Contains(t, retrying[0].attrs["error"], "flaky: try again")
	applied := waitLog(t, logs, "cairn: event applied after retrying") // logged after the commit WaitFor sees
	require.Equal(t, slog.LevelInfo, applied.level)
	require.Equal(t, "3", applied.attrs["attempts"])
	require.Empty(t, logs.with("cairn: projection failed and stopped"), "a retry that succeeds is no failure")

	l.add(ctx, t, e.store, "bad", 7)
	waitState(t, e.mgr, p.Name(), projection.Failed, progressWait)
	stopped := waitLog(t, logs, "cairn: projection failed and stopped")
	require.Equal(t, slog.LevelError, stopped.level)
	require.Contains(t, stopped.attrs["error"], "boom: cannot apply this one")
	require.Equal(t, slog.LevelInfo, waitLog(t, logs, "cairn: projection not running; waiting for resume").level)

	broken.Store(false)
	require.NoError(t, e.mgr.Resume(ctx, p.Name()))
	resumed := waitLog(t, logs, "cairn: projection resumed")
	require.Equal(t, slog.LevelInfo, resumed.level)
	require.Equal(t, "failed", resumed.attrs["was"])
	_, last, _ = l.snapshot()
	waitFor(t, e.mgr, last, progressWait, p.Name())
	require.Len(t, logs.with("cairn: projection failed and stopped"), 1, logs.dump())
	require.NoError(t, run.stop())
}

// The leader's connection cut while it applies an event (what a database
// restart does) is an outage, not a failure of the event: even with one
// attempt and the dead-letter policy, nothing is dead-lettered or stopped.
// The runner says it was interrupted, reconnects, says it recovered and
// applies the event once.
func TestCutConnectionIsNoFailureAndRecoveryIsLogged(t *testing.T) {
	logs := &logCapture{}
	e := newEnv(t, projection.Config{
		Retry:       retry.Policy{MaxAttempts: 1},
		Policy:      projection.PolicyDeadLetter,
		LeaderRetry: 50 * time.Millisecond,
		Logger:      slog.New(logs),
	})
	var cuts atomic.Int32
	p := &cutter{totals: totals{name: uniqueName(t, "cut"), version: 1}, cuts: &cuts}
	require.NoError(t, e.mgr.Register(p))
	ctx := context.Background()
	l := newLedger()
	l.add(ctx, t, e.store, "acct-1", 1)
	l.add(ctx, t, e.store, "cut", 10)
	l.add(ctx, t, e.store, "acct-1", 2)
	want, last, _ := l.snapshot()

	run := startRunner(t, e.mgr)
	waitFor(t, e.mgr, last, progressWait, p.Name())
	require.Equal(t, int32(1), cuts.Load(), "the projector cut its connection once")
	require.Equal(t, want, modelRows(t, e.store, p.Name()), "every event applied exactly once")
	st := status(t, e.mgr, p.Name())
	require.Equal(t, projection.Running, st.State)
	require.Zero(t, st.DeadLetters)

	interrupted := logs.with("cairn: projection runner interrupted; retrying")
	require.Len(t, interrupted, 1, logs.dump())
	require.Equal(t, slog.LevelWarn, interrupted[0].level)
	require.Contains(t, interrupted[0].attrs["error"], "database unavailable")
	recovered := waitLog(t, logs, "cairn: projection runner recovered")
	require.Equal(t, slog.LevelInfo, recovered.level)
	require.Equal(t, "1", recovered.attrs["failed_attempts"])
	require.Equal(t, "leading", recovered.attrs["role"])
	down, err := time.ParseDuration(recovered.attrs["down_for"])
	require.NoError(t, err)
	require.Positive(t, down)
	for _, msg := range []string{"cairn: event dead-lettered", "cairn: projection failed and stopped"} {
		require.Empty(t, logs.with(msg), "an outage is not the event's failure: %s", logs.dump())
	}
	require.NoError(t, run.stop())
}

// cutter is a totals projector that, the first time it applies an event of
// stream "cut", terminates its own database session, as a server restart
// would.
type cutter struct {
	totals
	cuts *atomic.Int32
}

func (c *cutter) Apply(ctx context.Context, tx pgx.Tx, e eventstore.RecordedEvent) error {
	if e.StreamID == "cut" && c.cuts.CompareAndSwap(0, 1) {
		_, err := tx.Exec(ctx, "SELECT pg_terminate_backend(pg_backend_pid())")
		return err
	}
	return c.totals.Apply(ctx, tx, e)
}
