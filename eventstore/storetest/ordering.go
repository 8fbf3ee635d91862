package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cairn-es/cairn/eventstore"
)

// Shape of the ordering proof's load.
const (
	proofSeed       = 20261126
	proofHotStreams = 8
	proofMaxBatch   = 20
)

// proofData identifies an event of the ordering proof: writer W's N-th event
// (N from 0).
type proofData struct {
	W int `json:"w"`
	N int `json:"n"`
}

// proofAppend is one append of a writer, kept to check its result.
type proofAppend struct {
	first, last uuid.UUID
	res         eventstore.AppendResult
}

// delivered is what the proof keeps of each event a subscriber receives.
type delivered struct {
	id      uuid.UUID
	stream  string
	version int64
	pos     eventstore.Position
}

// testConcurrentWritersTotalOrder is the ordering proof. Writers append
// concurrently, to fresh streams and to a few contended ones, while two
// subscribers follow the log from Start; one of them stops a third of the way
// and resumes from its checkpoint with a new subscription. Every subscriber
// must then have received the whole log exactly once, in the order a fresh
// read of the log returns, with each stream's versions in order and the
// positions strictly increasing.
func testConcurrentWritersTotalOrder(t *testing.T, ctx context.Context, s eventstore.Store, cfg config) {
	writers, perWriter := cfg.writers, cfg.eventsPerWriter
	total := writers * perWriter
	t.Logf("%d writers x %d events = %d events", writers, perWriter, total)
	begin := time.Now()

	// Subscribers run until they have every event or subCtx ends.
	subCtx, cancelSubs := context.WithCancel(ctx)
	defer cancelSubs()
	type subResult struct {
		got     []delivered
		resumed bool
		err     error
	}
	subs := []struct {
		name     string
		opts     eventstore.SubscribeOptions
		resumeAt int // close and resume after this many events; 0: never
	}{
		{"A", eventstore.SubscribeOptions{}, 0},
		{"B", eventstore.SubscribeOptions{BatchSize: 64}, max(total/3, 1)},
	}
	results := make([]subResult, len(subs))
	var subsWG sync.WaitGroup
	for i, sc := range subs {
		subsWG.Add(1)
		go func() {
			defer subsWG.Done()
			r := &results[i]
			r.got = make([]delivered, 0, total)
			r.err = runProofSubscriber(subCtx, s, sc.opts, total, sc.resumeAt, &r.got, &r.resumed)
		}()
	}
	subsDone := make(chan struct{})
	go func() {
		subsWG.Wait()
		close(subsDone)
	}()

	// Writers.
	writeCtx, cancelWriters := context.WithCancel(ctx)
	defer cancelWriters()
	appends := make([][]proofAppend, writers)
	writeErrs := make([]error, writers)
	var writersWG sync.WaitGroup
	for w := range writers {
		writersWG.Add(1)
		go func() {
			defer writersWG.Done()
			appends[w], writeErrs[w] = runProofWriter(writeCtx, s, w, perWriter)
			if writeErrs[w] != nil {
				cancelWriters()
			}
		}()
	}
	writersWG.Wait()
	writeTime := time.Since(begin)
	if err := errors.Join(writeErrs...); err != nil {
		cancelSubs()
		<-subsDone
		require.NoError(t, err, "writers failed")
	}

	// The subscribers have a while longer to drain: a store that lost
	// events fails here, with each subscriber's count, instead of hanging.
	drain := time.NewTimer(cfg.drainTimeout)
	defer drain.Stop()
	stopped := ""
	select {
	case <-subsDone:
	case <-drain.C:
		stopped = fmt.Sprintf(" (stopped %v after the writers finished)", cfg.drainTimeout)
		cancelSubs()
		<-subsDone
	case <-ctx.Done():
		stopped = " (the test's deadline passed)"
		cancelSubs()
		<-subsDone
	}
	drainTime := time.Since(begin)
	for i, r := range results {
		require.NoError(t, r.err, "subscriber %s received %d of %d events%s", subs[i].name, len(r.got), total, stopped)
	}

	// The log itself, read afresh once the writers have stopped.
	log := readWholeLog(t, ctx, s, eventstore.Start, eventstore.ReadLogOptions{Limit: 1000})
	require.Equal(t, total, len(log), "events in the log read after the writers stopped")
	checkProofLog(t, log, writers, perWriter, appends)

	logIDs := ids(log)
	for i, r := range results {
		name := subs[i].name
		if subs[i].resumeAt > 0 {
			require.True(t, r.resumed, "subscriber %s never resumed", name)
		}
		checkDelivered(t, name, r.got, logIDs)
	}
	t.Logf("writes %v, all delivered %v, total %v", writeTime.Round(time.Millisecond), drainTime.Round(time.Millisecond), time.Since(begin).Round(time.Millisecond))
}

// runProofWriter appends perWriter events for writer w in appends of 1 to
// proofMaxBatch events: three in four to a fresh stream (NoStream), one in
// four to a shared hot stream (Any).
func runProofWriter(ctx context.Context, s eventstore.Store, w, perWriter int) ([]proofAppend, error) {
	rng := rand.New(rand.NewPCG(proofSeed, uint64(w)))
	var out []proofAppend
	n := 0
	for k := 0; n < perWriter; k++ {
		size := 1
		if rng.IntN(2) == 0 {
			size = 1 + rng.IntN(proofMaxBatch)
		}
		size = min(size, perWriter-n)
		stream, expected := fmt.Sprintf("fresh-w%ds%d", w, k), eventstore.NoStream
		contended := false
		switch rng.IntN(8) {
		case 0, 1:
			stream, expected = fmt.Sprintf("hot-%d", rng.IntN(proofHotStreams)), eventstore.Any
		case 2:
			// Read-then-write with an exact version on a shared stream,
			// retried on conflict: concurrent writers of one version.
			stream, contended = fmt.Sprintf("exact-%d", rng.IntN(proofHotStreams/2)), true
		}
		events := make([]eventstore.Event, size)
		for i := range events {
			data, _ := json.Marshal(proofData{W: w, N: n + i})
			events[i] = eventstore.Event{ID: uuid.Must(uuid.NewV7()), Type: "ProofTick", Data: data}
		}
		var res eventstore.AppendResult
		var err error
		for attempt := 0; ; attempt++ {
			if contended {
				expected, err = currentVersion(ctx, s, stream)
				if err != nil {
					return out, err
				}
			}
			res, err = s.Append(ctx, stream, expected, events)
			if !contended || !errors.Is(err, eventstore.ErrConcurrency) || attempt > 1000 {
				break
			}
		}
		if err != nil {
			return out, fmt.Errorf("writer %d, append %d to %q: %w", w, k, stream, err)
		}
		if res.Duplicate || res.Version-res.FirstVersion+1 != int64(size) || res.StreamID != stream {
			return out, fmt.Errorf("writer %d, append %d of %d events to %q: unexpected result %+v", w, k, size, stream, res)
		}
		out = append(out, proofAppend{first: events[0].ID, last: events[size-1].ID, res: res})
		n += size
	}
	return out, nil
}

// currentVersion reads a stream's last version as an expected version.
func currentVersion(ctx context.Context, s eventstore.Store, stream string) (eventstore.ExpectedVersion, error) {
	last, err := s.ReadStream(ctx, stream, eventstore.ReadStreamOptions{Direction: eventstore.Backward, Limit: 1})
	if errors.Is(err, eventstore.ErrStreamNotFound) {
		return eventstore.NoStream, nil
	}
	if err != nil {
		return eventstore.Any, err
	}
	return eventstore.Exact(last[0].Version), nil
}

// runProofSubscriber follows the log from Start until it has total events.
// With resumeAt > 0 it closes its subscription after at least resumeAt
// events and opens a new one from the checkpoint.
func runProofSubscriber(ctx context.Context, s eventstore.Store, opts eventstore.SubscribeOptions, total, resumeAt int, got *[]delivered, resumed *bool) error {
	sub, err := s.Subscribe(ctx, eventstore.Start, opts)
	if err != nil {
		return err
	}
	defer func() { sub.Close() }()
	for len(*got) < total {
		batch, err := sub.NextBatch(ctx)
		if err != nil {
			return err
		}
		if len(batch) == 0 {
			return errors.New("NextBatch returned no events and no error")
		}
		for _, e := range batch {
			*got = append(*got, delivered{e.ID, e.StreamID, e.Version, e.Position})
		}
		if sub.Position() != batch[len(batch)-1].Position {
			return fmt.Errorf("Position() %s is not the last delivered event's %s", sub.Position(), batch[len(batch)-1].Position)
		}
		if resumeAt > 0 && !*resumed && len(*got) >= resumeAt {
			checkpoint := sub.Position()
			if err := sub.Close(); err != nil {
				return fmt.Errorf("close: %w", err)
			}
			if _, err := sub.NextBatch(ctx); !errors.Is(err, eventstore.ErrSubscriptionClosed) {
				return fmt.Errorf("NextBatch after Close returned %v, want ErrSubscriptionClosed", err)
			}
			if sub, err = s.Subscribe(ctx, checkpoint, opts); err != nil {
				return fmt.Errorf("resume from %s: %w", checkpoint, err)
			}
			*resumed = true
		}
	}
	return nil
}

// checkProofLog checks the log read after the writers stopped: every
// writer's events once, in the order the writer appended them, versions
// contiguous per stream, positions increasing, and each append's result
// matching its events.
func checkProofLog(t *testing.T, log []eventstore.RecordedEvent, writers, perWriter int, appends [][]proofAppend) {
	t.Helper()
	requireIncreasing(t, log)
	byID := make(map[uuid.UUID]int, len(log))
	next := make([]int, writers) // next N expected from each writer
	streamVersion := map[string]int64{}
	for i, e := range log {
		_, dup := byID[e.ID]
		require.False(t, dup, "log[%d]: event %s appears twice", i, e.ID)
		byID[e.ID] = i
		var d proofData
		require.NoError(t, json.Unmarshal(e.Data, &d), "log[%d] data %s", i, e.Data)
		require.True(t, d.W >= 0 && d.W < writers, "log[%d]: writer %d", i, d.W)
		// A writer's appends are sequential, so its events must be in the
		// log in the order it wrote them.
		require.Equal(t, next[d.W], d.N, "log[%d]: writer %d's events out of order", i, d.W)
		next[d.W]++
		require.Equal(t, streamVersion[e.StreamID]+1, e.Version, "log[%d]: stream %q version", i, e.StreamID)
		streamVersion[e.StreamID] = e.Version
	}
	for w, n := range next {
		require.Equal(t, perWriter, n, "writer %d's events in the log", w)
	}
	hot := 0
	for k := range proofHotStreams {
		hot += int(streamVersion[fmt.Sprintf("hot-%d", k)])
	}
	t.Logf("%d streams, %d events in the %d hot streams", len(streamVersion), hot, proofHotStreams)

	// Each append's result points at its own events.
	for w, as := range appends {
		for k, a := range as {
			first, last := log[byID[a.first]], log[byID[a.last]]
			require.Equal(t, a.res.StreamID, last.StreamID, "writer %d append %d", w, k)
			require.Equal(t, a.res.FirstVersion, first.Version, "writer %d append %d: FirstVersion", w, k)
			require.Equal(t, a.res.Version, last.Version, "writer %d append %d: Version", w, k)
			require.Equal(t, a.res.Position, last.Position, "writer %d append %d: Position", w, k)
		}
	}
}

// checkDelivered checks one subscriber's deliveries against the log.
func checkDelivered(t *testing.T, name string, got []delivered, logIDs []uuid.UUID) {
	t.Helper()
	require.Equal(t, len(logIDs), len(got), "subscriber %s: events delivered", name)
	seen := make(map[uuid.UUID]struct{}, len(got))
	streamVersion := map[string]int64{}
	for i, d := range got {
		_, dup := seen[d.id]
		require.False(t, dup, "subscriber %s: event %s delivered twice (at %d)", name, d.id, i)
		seen[d.id] = struct{}{}
		require.Equal(t, streamVersion[d.stream]+1, d.version, "subscriber %s: delivery %d, stream %q out of version order", name, i, d.stream)
		streamVersion[d.stream] = d.version
		if i > 0 {
			require.True(t, got[i-1].pos.Before(d.pos), "subscriber %s: positions not increasing at %d: %s then %s", name, i, got[i-1].pos, d.pos)
		}
		if d.id != logIDs[i] {
			assert.Failf(t, "delivery order differs from the log", "subscriber %s: delivery %d is event %s, the log has %s", name, i, d.id, logIDs[i])
			return
		}
	}
}
