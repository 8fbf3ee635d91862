package projection_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cairn-es/cairn/eventstore"
	"github.com/cairn-es/cairn/eventstore/postgres"
	"github.com/cairn-es/cairn/internal/pgtest"
	"github.com/cairn-es/cairn/projection"
)

// helperRunnerEnv carries a helperRunnerConfig to a child process running
// TestHelperProcessRunner.
const helperRunnerEnv = "CAIRN_PROJECTION_HELPER_RUNNER"

type helperRunnerConfig struct {
	DatabaseURL string        `json:"database_url"`
	Schema      string        `json:"schema"`
	Projection  string        `json:"projection"`
	BatchSize   int           `json:"batch_size"`
	ApplyDelay  time.Duration `json:"apply_delay"`
	BlockAt     int           `json:"block_at"` // the Apply call that never returns
}

// TestHelperProcessRunner is not a test. It is the body of the runner
// processes that TestRunnerProcessKilledMidBatch starts by re-executing the
// test binary, and does nothing at all unless CAIRN_PROJECTION_HELPER_RUNNER
// is set. As a child it runs a Manager with a slow totals projector that
// prints "apply <stream> <version>" to stdout before applying each event
// and never returns from its BlockAt-th Apply (so a kill after that line
// lands inside an open batch transaction, whatever the timing), until it is
// killed, its stdin closes (the parent is gone), or a minute passes.
func TestHelperProcessRunner(t *testing.T) {
	raw := os.Getenv(helperRunnerEnv)
	if raw == "" {
		return
	}
	var cfg helperRunnerConfig
	if err := json.Unmarshal([]byte(raw), &cfg); err != nil {
		t.Fatalf("helper runner: bad %s: %v", helperRunnerEnv, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		cancel()
	}()
	pool, err := pgxpool.New(ctx, cfg.DatabaseURL)
	if err != nil {
		t.Fatalf("helper runner: %v", err)
	}
	defer pool.Close()
	store, err := postgres.New(pool, postgres.Config{Schema: cfg.Schema, Logger: quietLog})
	if err != nil {
		t.Fatalf("helper runner: %v", err)
	}
	defer store.Close()
	mgr := pgtest.Manager(t, store, projection.Config{BatchSize: cfg.BatchSize, LeaderRetry: 20 * time.Millisecond, Logger: quietLog})
	defer mgr.Close()
	var mu sync.Mutex
	calls := 0
	p := &totals{name: cfg.Projection, version: 1, fail: func(e eventstore.RecordedEvent) error {
		mu.Lock()
		calls++
		n := calls
		fmt.Fprintf(os.Stdout, "apply %s %d\n", e.StreamID, e.Version)
		mu.Unlock()
		if n == cfg.BlockAt {
			<-ctx.Done()
			return ctx.Err()
		}
		time.Sleep(cfg.ApplyDelay)
		return nil
	}}
	if err := mgr.Register(p); err != nil {
		t.Fatalf("helper runner: %v", err)
	}
	if err := mgr.Run(ctx); err != nil {
		t.Fatalf("helper runner: %v", err)
	}
}

// childRunner is a runner process started from TestHelperProcessRunner.
type childRunner struct {
	app    string
	cmd    *exec.Cmd
	stdin  io.Closer
	lines  chan string // "apply <stream> <version>", closed at the child's end
	stderr *bytes.Buffer
}

func withApplicationName(t *testing.T, dsn, app string) string {
	t.Helper()
	if !strings.Contains(dsn, "://") {
		return dsn + " application_name=" + app
	}
	u, err := url.Parse(dsn)
	require.NoError(t, err)
	q := u.Query()
	q.Set("application_name", app)
	u.RawQuery = q.Encode()
	return u.String()
}

func startChildRunner(t *testing.T, e env, name, app string, blockAt int) *childRunner {
	t.Helper()
	cfg, err := json.Marshal(helperRunnerConfig{
		DatabaseURL: withApplicationName(t, pgtest.URL(), app),
		Schema:      e.store.Schema(),
		Projection:  name,
		BatchSize:   10,
		ApplyDelay:  5 * time.Millisecond,
		BlockAt:     blockAt,
	})
	require.NoError(t, err)
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcessRunner$", "-test.count=1", "-test.timeout=2m")
	cmd.Env = append(os.Environ(), helperRunnerEnv+"="+string(cfg))
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	stdin, err := cmd.StdinPipe()
	require.NoError(t, err)
	c := &childRunner{app: app, cmd: cmd, stdin: stdin, lines: make(chan string, 100_000), stderr: &bytes.Buffer{}}
	cmd.Stderr = c.stderr
	require.NoError(t, cmd.Start())
	go func() {
		defer close(c.lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "apply ") {
				c.lines <- strings.TrimPrefix(sc.Text(), "apply ")
			}
		}
	}()
	t.Cleanup(func() {
		_ = stdin.Close()
		_ = cmd.Process.Kill()
		for range c.lines {
		}
		_ = cmd.Wait()
	})
	return c
}

// next returns the child's next applied event, "stream version".
func (c *childRunner) next(t *testing.T) string {
	t.Helper()
	select {
	case line, ok := <-c.lines:
		if !ok {
			t.Fatalf("runner process %s ended early; stderr:\n%s", c.app, c.stderr.String())
		}
		return line
	case <-time.After(30 * time.Second):
		t.Fatalf("runner process %s applied nothing for 30s; stderr:\n%s", c.app, c.stderr.String())
		return ""
	}
}

// kill9 kills the child with SIGKILL and returns how many more events it
// had started applying, then waits until PostgreSQL has ended its sessions
// (so whatever it had in flight is rolled back or committed for good).
func (c *childRunner) kill9(t *testing.T, e env) int {
	t.Helper()
	require.NoError(t, c.cmd.Process.Signal(syscall.SIGKILL))
	more := 0
	for range c.lines {
		more++
	}
	err := c.cmd.Wait()
	var exit *exec.ExitError
	require.ErrorAs(t, err, &exit)
	require.Equal(t, syscall.SIGKILL, exit.Sys().(syscall.WaitStatus).Signal())
	require.EventuallyWithT(t, func(ct *assert.CollectT) {
		var n int
		require.NoError(ct, e.store.Pool().QueryRow(context.Background(), "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1", c.app).Scan(&n))
		assert.Zero(ct, n, "sessions of the killed runner remain")
	}, 20*time.Second, pollEvery)
	return more
}

// foldLog is what the totals model must hold at a checkpoint: the log's
// Added events up to and including it, folded per stream.
func foldLog(t *testing.T, store *postgres.Store, upTo eventstore.Position) (map[string][2]int64, int64) {
	t.Helper()
	out := map[string][2]int64{}
	var n int64
	pos := eventstore.Start
	for {
		events, err := store.ReadLog(context.Background(), pos, eventstore.ReadLogOptions{Types: []string{"Added"}, Limit: 500})
		require.NoError(t, err)
		for _, e := range events {
			if upTo.Before(e.Position) {
				return out, n
			}
			var d struct{ Amount int64 }
			require.NoError(t, json.Unmarshal(e.Data, &d))
			r := out[e.StreamID]
			out[e.StreamID] = [2]int64{r[0] + d.Amount, r[1] + 1}
			n++
		}
		if len(events) == 0 {
			return out, n
		}
		pos = events[len(events)-1].Position
	}
}

// firstAfter names the first event of the projection's types after pos.
func firstAfter(t *testing.T, store *postgres.Store, pos eventstore.Position) string {
	t.Helper()
	events, err := store.ReadLog(context.Background(), pos, eventstore.ReadLogOptions{Types: []string{"Added"}, Limit: 1})
	require.NoError(t, err)
	require.Len(t, events, 1)
	return fmt.Sprintf("%s %d", events[0].StreamID, events[0].Version)
}

// A runner process killed with SIGKILL in the middle of a batch loses that
// batch and nothing else: its successor resumes exactly after the last
// committed batch, and the model ends up equal to a from-scratch rebuild
// and to the ledger of what was appended.
func TestRunnerProcessKilledMidBatch(t *testing.T) {
	e := newEnv(t, projection.Config{BatchSize: 10, LeaderRetry: 50 * time.Millisecond})
	name := uniqueName(t, "crash")
	require.NoError(t, e.mgr.Register(&totals{name: name, version: 1}))
	l := newLedger()
	seed(t, e, l, 120, 6)

	// First process: killed in the middle of a batch, after committing at
	// least two (25 applies in batches of at most 10).
	first := startChildRunner(t, e, name, "cairn-crash-1-"+name, 25)
	started := 0
	for ; started < 25; started++ {
		first.next(t)
	}
	started += first.kill9(t, e)
	require.Equal(t, 25, started, "the first runner was stuck in its 25th apply")
	cp1, applied1 := checkpointRow(t, e.store.Pool(), name)
	require.GreaterOrEqual(t, applied1, int64(2))
	require.Less(t, applied1, int64(25), "the batch in flight was lost: started %d, committed %d", started, applied1)
	want1, n1 := foldLog(t, e.store, cp1)
	require.Equal(t, applied1, n1)
	require.Equal(t, want1, modelRows(t, e.store, name), "the model holds exactly the committed batches")

	// Writers append while the second process runs; it resumes right
	// after the first one's checkpoint, and is killed mid-batch too.
	var wg sync.WaitGroup
	for w := range 3 {
		wg.Go(func() {
			for i := range 30 {
				l.add(context.Background(), t, e.store, fmt.Sprintf("live-%d", w), i+1)
			}
		})
	}
	second := startChildRunner(t, e, name, "cairn-crash-2-"+name, 15)
	require.Equal(t, firstAfter(t, e.store, cp1), second.next(t), "resumed right after the checkpoint")
	started = 1
	for ; started < 15; started++ {
		second.next(t)
	}
	started += second.kill9(t, e)
	require.Equal(t, 15, started)
	cp2, applied2 := checkpointRow(t, e.store.Pool(), name)
	require.Greater(t, applied2, applied1, "the second runner committed batches")
	require.Less(t, applied2-applied1, int64(15), "the batch in flight was lost")
	want2, n2 := foldLog(t, e.store, cp2)
	require.Equal(t, applied2, n2)
	require.Equal(t, want2, modelRows(t, e.store, name))
	wg.Wait()

	// A third runner, in this process, finishes the job.
	run := startRunner(t, e.mgr)
	want, last, n := l.snapshot()
	waitFor(t, e.mgr, last, progressWait, name)
	require.Equal(t, want, modelRows(t, e.store, name), "totals equal the sums of the appended amounts")
	st := status(t, e.mgr, name)
	require.Equal(t, n, st.EventsApplied, "every event applied exactly once")
	require.Equal(t, last, st.Checkpoint)
	require.NoError(t, run.stop())
	verifyIdentical(t, e.mgr, name)
}
