package cli_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/cairn-es/cairn/cli"
	"github.com/cairn-es/cairn/eventstore"
)

// decodeLines decodes JSON Lines of events.
func decodeLines(t *testing.T, out string) []cli.EventJSON {
	t.Helper()
	events := []cli.EventJSON{}
	for line := range strings.Lines(out) {
		var e cli.EventJSON
		require.NoError(t, json.Unmarshal([]byte(line), &e), line)
		events = append(events, e)
	}
	return events
}

func eventIDs(events []cli.EventJSON) []uuid.UUID {
	out := make([]uuid.UUID, len(events))
	for i, e := range events {
		out[i] = e.ID
	}
	return out
}

func TestEventsShow(t *testing.T) {
	h := newHarness(t)
	occurred := time.Date(2021, 6, 1, 8, 30, 0, 123456000, time.UTC)
	id := uuid.Must(uuid.NewV7())
	res := h.append("order-1", eventstore.Event{ID: id, Type: "OrderPlaced", SchemaVersion: 2, Data: []byte(`{"total": 1200, "lines": [1, 2]}`),
		OccurredAt: occurred,
		Metadata: eventstore.Metadata{CorrelationID: "corr-1", CausationID: "cause-1", Extra: map[string]string{"tenant": "acme"},
			Values: map[string]json.RawMessage{"attempt": json.RawMessage(`3`), "actor": json.RawMessage(`{"id": "u-1"}`)}}})
	plain := h.append("order-1", eventstore.Event{Type: "OrderPaid"})

	var got cli.EventJSON
	require.NoError(t, json.Unmarshal([]byte(h.ok("events", "show", id.String(), "--json")), &got))
	require.Equal(t, id, got.ID)
	require.Equal(t, "order-1", got.StreamID)
	require.Equal(t, int64(1), got.Version)
	require.Equal(t, res.Position, got.Position)
	require.Equal(t, "OrderPlaced", got.Type)
	require.Equal(t, 2, got.SchemaVersion)
	require.JSONEq(t, `{"total": 1200, "lines": [1, 2]}`, string(got.Data))
	require.True(t, occurred.Equal(got.OccurredAt), "occurred_at %s", got.OccurredAt)
	require.False(t, got.RecordedAt.IsZero())
	require.NotNil(t, got.Metadata)
	require.Equal(t, "corr-1", got.Metadata.CorrelationID)
	require.Equal(t, map[string]string{"tenant": "acme"}, got.Metadata.Extra)
	require.JSONEq(t, `3`, string(got.Metadata.Values["attempt"]), "a number stays a number")
	require.JSONEq(t, `{"id": "u-1"}`, string(got.Metadata.Values["actor"]))

	// One field a line, aligned; compared here with the white space collapsed.
	var lines []string
	for line := range strings.Lines(h.ok("events", "show", id.String())) {
		lines = append(lines, strings.Join(strings.Fields(line), " "))
	}
	require.Equal(t, []string{
		"id " + id.String(),
		"stream order-1@1",
		"position " + res.Position.String(),
		"type OrderPlaced/v2",
		"recorded_at " + got.RecordedAt.UTC().Format(time.RFC3339Nano),
		"occurred_at 2021-06-01T08:30:00.123456Z",
		"correlation_id corr-1",
		"causation_id cause-1",
		"extra.tenant acme",
		`values.actor {"id":"u-1"}`,
		"values.attempt 3",
		"data",
		"{",
		`"lines": [`,
		"1,",
		"2",
		"],",
		`"total": 1200`,
		"}",
	}, lines)

	// Without an occurred-at time, the event occurred when recorded.
	events, err := h.store.ReadStream(context.Background(), "order-1", eventstore.ReadStreamOptions{From: 2})
	require.NoError(t, err)
	var bare cli.EventJSON
	require.NoError(t, json.Unmarshal([]byte(h.ok("events", "show", events[0].ID.String(), "--json")), &bare))
	require.Equal(t, plain.Position, bare.Position)
	require.True(t, bare.RecordedAt.Equal(bare.OccurredAt))
	require.Nil(t, bare.Metadata)

	missing := uuid.Must(uuid.NewV7())
	r := h.run("events", "show", missing.String())
	require.ErrorIs(t, r.e, eventstore.ErrEventNotFound)
	require.Equal(t, 1, cli.ExitCode(r.e))
	require.Contains(t, r.err, fmt.Sprintf("event %s not found", missing))

	for _, args := range [][]string{{"events", "show", "not-a-uuid"}, {"events", "show"}, {"events", "show", id.String(), id.String()}} {
		r := h.run(args...)
		require.Equal(t, 2, cli.ExitCode(r.e), "%v: %v", args, r.e)
		require.Contains(t, r.err, "--help' for usage", "%v", args)
	}
}

func TestEventsReadSince(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	h.append("order-1", eventstore.Event{Type: "Old"}, eventstore.Event{Type: "Old"})
	old, err := h.store.ReadStream(ctx, "order-1", eventstore.ReadStreamOptions{})
	require.NoError(t, err)
	// Append until the server's clock has passed the old events'.
	var cut time.Time
	for attempt := 0; cut.IsZero(); attempt++ {
		require.Less(t, attempt, 1000, "the server's clock did not pass %s", old[1].RecordedAt)
		res := h.append("order-1", eventstore.Event{Type: "New"})
		got, err := h.store.ReadStream(ctx, "order-1", eventstore.ReadStreamOptions{From: res.Version})
		require.NoError(t, err)
		if got[0].RecordedAt.After(old[1].RecordedAt) {
			cut = got[0].RecordedAt
		} else {
			time.Sleep(time.Millisecond) // paces the retries; no outcome depends on it
		}
	}
	h.append("payment-1", eventstore.Event{Type: "New"})
	last := h.append("order-1", eventstore.Event{Type: "New"})
	h.readable(last.Position)

	all, err := h.store.ReadLog(ctx, eventstore.Start, eventstore.ReadLogOptions{})
	require.NoError(t, err)
	var want, wantStream []uuid.UUID
	for _, e := range all {
		if !e.RecordedAt.Before(cut) {
			want = append(want, e.ID)
			if e.StreamID == "order-1" {
				wantStream = append(wantStream, e.ID)
			}
		}
	}
	require.Less(t, len(want), len(all), "the bound leaves the old events out")
	sinceArg := cut.In(time.FixedZone("", 2*3600)).Format(time.RFC3339Nano)

	// The log, from the start.
	require.Equal(t, want, eventIDs(decodeLines(t, h.ok("events", "read", "--since", sinceArg, "--json"))))
	require.Equal(t, want[:2], eventIDs(decodeLines(t, h.ok("events", "read", "--since", sinceArg, "--json", "--limit", "2"))))
	require.Len(t, decodeLines(t, h.ok("events", "read", "--json")), len(all), "without --since: the whole log")
	require.Empty(t, h.ok("events", "read", "--since", time.Now().Add(24*time.Hour).Format(time.RFC3339)))
	human := strings.Split(strings.TrimSpace(h.ok("events", "read", "--since", sinceArg)), "\n")
	require.Len(t, human, len(want))
	require.Contains(t, human[0], "  New  ")

	// One stream.
	require.Equal(t, wantStream, eventIDs(decodeLines(t, h.ok("events", "read", "order-1", "--since", sinceArg, "--json"))))
	back := eventIDs(decodeLines(t, h.ok("events", "read", "order-1", "--since", sinceArg, "--json", "--backward", "--limit", "1")))
	require.Equal(t, wantStream[len(wantStream)-1:], back)

	for _, args := range [][]string{
		{"events", "read", "--since", "yesterday"},
		{"events", "read", "--since", "2026-12-03"},
		{"events", "read", "--from", "2"},
		{"events", "read", "--backward"},
		{"events", "read", "a", "b"},
	} {
		r := h.run(args...)
		require.Equal(t, 2, cli.ExitCode(r.e), "%v: %v", args, r.e)
		require.Contains(t, r.err, "--help' for usage", "%v", args)
	}
}
