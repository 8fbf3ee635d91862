package storetest

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cairn-es/cairn/eventstore"
)

// testMetadataValues: Metadata.Values give back the JSON value put in (a
// number stays a number, a boolean a boolean, an object an object), in
// jsonb's form, from every read, beside Extra's strings under the same
// keys; reads return copies; a value that is not JSON PostgreSQL can keep
// is refused, typed, and nothing is written.
func testMetadataValues(t *testing.T, ctx context.Context, s eventstore.Store) {
	in := map[string]json.RawMessage{
		"attempt": json.RawMessage(`3`),
		"ratio":   json.RawMessage(`1.50`),
		"big":     json.RawMessage(`1e2`),
		"dry_run": json.RawMessage(`true`),
		"none":    json.RawMessage(`null`),
		"tags":    json.RawMessage(`["a", 1,false]`),
		"actor":   json.RawMessage(`{"id":"u-1","roles":{"admin":true},"id":"u-2"}`),
		"note":    json.RawMessage(`"a \"string\""`),
	}
	want := map[string]string{
		"attempt": `3`,
		"ratio":   `1.50`,
		"big":     `100`,
		"dry_run": `true`,
		"none":    `null`,
		"tags":    `["a", 1, false]`,
		"actor":   `{"id": "u-2", "roles": {"admin": true}}`,
		"note":    `"a \"string\""`,
	}
	e := newEvent("Tagged", `{}`)
	e.Metadata = eventstore.Metadata{CorrelationID: "corr-1", Extra: map[string]string{"attempt": "three"}, Values: in}
	mustAppend(t, ctx, s, "order-1", eventstore.NoStream, []eventstore.Event{e, newEvent("Plain", `{}`)})
	in["attempt"][0] = '9' // the caller's buffers are not the store's

	check := func(t *testing.T, how string, got []eventstore.RecordedEvent) {
		t.Helper()
		require.Len(t, got, 2, how)
		m := got[0].Metadata
		assert.Equal(t, "corr-1", m.CorrelationID, how)
		assert.Equal(t, map[string]string{"attempt": "three"}, m.Extra, "%s: Extra keeps its strings", how)
		gotValues := make(map[string]string, len(m.Values))
		for k, v := range m.Values {
			gotValues[k] = string(v)
		}
		assert.Equal(t, want, gotValues, "%s: values in jsonb's form", how)
		var typed struct {
			Attempt int
			DryRun  bool `json:"dry_run"`
			Actor   struct {
				ID    string
				Roles map[string]bool
			}
		}
		raw, err := json.Marshal(m.Values)
		require.NoError(t, err)
		require.NoError(t, json.Unmarshal(raw, &typed), how)
		assert.Equal(t, 3, typed.Attempt, how)
		assert.True(t, typed.DryRun, how)
		assert.Equal(t, "u-2", typed.Actor.ID, how)
		assert.True(t, typed.Actor.Roles["admin"], how)
		assert.Empty(t, got[1].Metadata.Values, "%s: no values given", how)
	}
	stream := readStream(t, ctx, s, "order-1", eventstore.ReadStreamOptions{})
	check(t, "ReadStream", stream)
	check(t, "ReadLog", readWholeLog(t, ctx, s, eventstore.Start, eventstore.ReadLogOptions{}))

	// What a reader gets is its own.
	stream[0].Metadata.Values["attempt"][0] = '7'
	stream[0].Metadata.Values["new"] = json.RawMessage(`1`)
	check(t, "ReadStream after the reader's changes", readStream(t, ctx, s, "order-1", eventstore.ReadStreamOptions{}))

	t.Run("Invalid", func(t *testing.T) {
		h := head(t, ctx, s)
		for name, v := range map[string]json.RawMessage{
			"Empty":         nil,
			"NotJSON":       json.RawMessage(`{"a":`),
			"TwoValues":     json.RawMessage(`1 2`),
			"NULEscape":     json.RawMessage(`"a\u0000b"`),
			"InvalidUTF8":   json.RawMessage("\"\xff\""),
			"HugeNumber":    json.RawMessage(`1e131072`),
			"BareWord":      json.RawMessage(`yes`),
			"LoneSurrogate": json.RawMessage(`"\ud800"`),
		} {
			t.Run(name, func(t *testing.T) {
				bad := newEvent("Bad", `{}`)
				bad.Metadata.Values = map[string]json.RawMessage{"v": v}
				_, err := s.Append(ctx, "order-1", eventstore.Exact(2), []eventstore.Event{newEvent("Good", `{}`), bad})
				require.ErrorIs(t, err, eventstore.ErrInvalidEvent)
				var ve *eventstore.ValidationError
				require.ErrorAs(t, err, &ve)
				assert.Equal(t, 1, ve.Index)
				assert.Contains(t, ve.Reason, `values "v"`, "the reason names the value")
				assert.Equal(t, h, head(t, ctx, s), "a refused append moved the head")
				assert.Equal(t, 2, streamLen(t, ctx, s, "order-1"), "a refused append wrote to the stream")
			})
		}
		bad := newEvent("Bad", `{}`)
		bad.Metadata.Values = map[string]json.RawMessage{"k\x00": json.RawMessage(`1`)}
		_, err := s.Append(ctx, "order-1", eventstore.Exact(2), []eventstore.Event{bad})
		require.ErrorIs(t, err, eventstore.ErrInvalidEvent, "a NUL in a key")
		assert.Equal(t, 2, streamLen(t, ctx, s, "order-1"))
	})
}
