package kurrentdbtest_test

import (
	"errors"
	"io"
	"testing"

	"github.com/google/uuid"
	kdb "github.com/kurrent-io/KurrentDB-Client-Go/kurrentdb"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cairn-es/cairn/eventstore/kurrentdb/kurrentdbtest"
)

// These tests drive the stand-in with the real client and check the
// KurrentDB behaviour the store relies on.

func client(t *testing.T) (*kurrentdbtest.Server, *kdb.Client) {
	t.Helper()
	srv, err := kurrentdbtest.Start()
	require.NoError(t, err)
	t.Cleanup(srv.Close)
	conf, err := kdb.ParseConnectionString(srv.ConnectionString())
	require.NoError(t, err)
	c, err := kdb.NewClient(conf)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return srv, c
}

func events(types ...string) []kdb.EventData {
	out := make([]kdb.EventData, len(types))
	for i, typ := range types {
		out[i] = kdb.EventData{EventID: uuid.New(), EventType: typ, ContentType: kdb.ContentTypeJson, Data: []byte(`{}`)}
	}
	return out
}

func readAll(t *testing.T, c *kdb.Client, opts kdb.ReadAllOptions, count uint64) []*kdb.ResolvedEvent {
	t.Helper()
	rs, err := c.ReadAll(t.Context(), opts, count)
	require.NoError(t, err)
	defer rs.Close()
	var out []*kdb.ResolvedEvent
	for {
		ev, err := rs.Recv()
		if errors.Is(err, io.EOF) {
			return out
		}
		require.NoError(t, err)
		out = append(out, ev)
	}
}

func TestAppendRevisionsAndExpectedVersions(t *testing.T) {
	ctx := t.Context()
	_, c := client(t)
	ab := events("A", "B")
	wr, err := c.AppendToStream(ctx, "s-1", kdb.AppendToStreamOptions{StreamState: kdb.NoStream{}}, ab...)
	require.NoError(t, err)
	assert.Equal(t, uint64(1), wr.NextExpectedVersion, "revisions from 0")
	assert.Equal(t, wr.CommitPosition, wr.PreparePosition)
	assert.Positive(t, wr.CommitPosition)

	for _, state := range []kdb.StreamState{kdb.NoStream{}, kdb.StreamRevision{Value: 0}, kdb.StreamRevision{Value: 5}} {
		_, err = c.AppendToStream(ctx, "s-1", kdb.AppendToStreamOptions{StreamState: state}, events("C")...)
		var ke *kdb.Error
		require.ErrorAs(t, err, &ke, "%T", state)
		assert.Equal(t, kdb.ErrorCodeWrongExpectedVersion, ke.Code())
		assert.Contains(t, err.Error(), "but got '1'", "the answer carries the actual revision")
	}
	_, err = c.AppendToStream(ctx, "s-2", kdb.AppendToStreamOptions{StreamState: kdb.StreamExists{}}, events("C")...)
	assert.ErrorContains(t, err, "but got 'no_stream'")

	// Idempotent writes answer with the original events.
	for _, state := range []kdb.StreamState{kdb.NoStream{}, kdb.Any{}, kdb.StreamExists{}} {
		again, err := c.AppendToStream(ctx, "s-1", kdb.AppendToStreamOptions{StreamState: state}, ab...)
		require.NoError(t, err, "%T", state)
		assert.Equal(t, *wr, *again, "%T", state)
	}
	// A partial repeat is a wrong expected version, even with any.
	_, err = c.AppendToStream(ctx, "s-1", kdb.AppendToStreamOptions{StreamState: kdb.Any{}}, ab[1], events("D")[0])
	assert.ErrorContains(t, err, "wrong expected version")
	// An ID from another stream is no repeat: KurrentDB writes it.
	other, err := c.AppendToStream(ctx, "s-3", kdb.AppendToStreamOptions{StreamState: kdb.Any{}}, ab[0])
	require.NoError(t, err)
	assert.Greater(t, other.CommitPosition, wr.CommitPosition)
}

func TestReads(t *testing.T) {
	ctx := t.Context()
	_, c := client(t)
	rs, err := c.ReadStream(ctx, "nope", kdb.ReadStreamOptions{}, 10)
	require.NoError(t, err)
	_, err = rs.Recv()
	var ke *kdb.Error
	require.ErrorAs(t, err, &ke)
	assert.Equal(t, kdb.ErrorCodeResourceNotFound, ke.Code(), "stream not found")

	for _, s := range []string{"a-1", "b-1", "a-1", "$$a-1"} {
		_, err := c.AppendToStream(ctx, s, kdb.AppendToStreamOptions{}, events("X", "Y")...)
		require.NoError(t, err)
	}
	all := readAll(t, c, kdb.ReadAllOptions{}, 100)
	require.Len(t, all, 8)
	for i := 1; i < len(all); i++ {
		assert.Less(t, all[i-1].Event.Position.Commit, all[i].Event.Position.Commit)
		assert.Equal(t, all[i].Event.Position.Commit, all[i].Event.Position.Prepare)
	}
	from := all[3].Event.Position
	fwd := readAll(t, c, kdb.ReadAllOptions{From: from}, 100)
	assert.Equal(t, all[3].Event.EventID, fwd[0].Event.EventID, "forwards from a position includes it")
	back := readAll(t, c, kdb.ReadAllOptions{Direction: kdb.Backwards, From: from}, 100)
	require.Len(t, back, 3, "backwards from a position starts before it")
	assert.Equal(t, all[2].Event.EventID, back[0].Event.EventID)

	rs, err = c.ReadStream(ctx, "a-1", kdb.ReadStreamOptions{Direction: kdb.Backwards, From: kdb.End{}}, 2)
	require.NoError(t, err)
	ev, err := rs.Recv()
	require.NoError(t, err)
	assert.Equal(t, uint64(3), ev.Event.EventNumber)
	rs.Close()
}

func TestSubscriptionCatchUpThenLive(t *testing.T) {
	ctx := t.Context()
	_, c := client(t)
	for _, s := range []string{"a-1", "b-1", "a-2"} {
		_, err := c.AppendToStream(ctx, s, kdb.AppendToStreamOptions{}, events("X")...)
		require.NoError(t, err)
	}
	sub, err := c.SubscribeToAll(ctx, kdb.SubscribeToAllOptions{From: kdb.Start{}, Filter: &kdb.SubscriptionFilter{Type: kdb.StreamFilterType, Prefixes: []string{"a-"}}})
	require.NoError(t, err)
	defer sub.Close()
	var got []string
	for {
		msg := sub.Recv()
		require.Nil(t, msg.SubscriptionDropped)
		if msg.CaughtUp != nil {
			break
		}
		if msg.EventAppeared != nil {
			got = append(got, msg.EventAppeared.Event.StreamID)
		}
	}
	assert.Equal(t, []string{"a-1", "a-2"}, got)
	_, err = c.AppendToStream(ctx, "b-2", kdb.AppendToStreamOptions{}, events("X")...)
	require.NoError(t, err)
	_, err = c.AppendToStream(ctx, "a-3", kdb.AppendToStreamOptions{}, events("X")...)
	require.NoError(t, err)
	for {
		msg := sub.Recv()
		require.Nil(t, msg.SubscriptionDropped)
		if msg.EventAppeared != nil {
			assert.Equal(t, "a-3", msg.EventAppeared.Event.StreamID, "live, filtered")
			return
		}
	}
}
