package storetest

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cairn-es/cairn/eventstore"
)

// Every store gives back event and snapshot data in one form: the text
// PostgreSQL's jsonb prints (keys ordered by length and then bytes, the
// last of repeated keys kept, numbers in plain decimal notation with their
// scale, strings with only the escapes JSON requires, ", " and ": "
// between items). A test written against one store then compares the same
// bytes against another.
var dataForms = []struct{ in, want string }{
	{`{"b":1,"a":2,"aa":3,"a":4}`, `{"a": 4, "b": 1, "aa": 3}`},
	{`{"n":1e2,"m":1.50,"z":-0,"y":1.00e1,"x":1e-3,"w":-0.0,"v":123456789012345678901234567890}`,
		`{"m": 1.50, "n": 100, "v": 123456789012345678901234567890, "w": 0.0, "x": 0.001, "y": 10.0, "z": 0}`},
	{`{"s":"\u00e9\/\u001F\b\"\\ \ud83d\ude00","é":1,"z":2}`, `{"s": "é/\u001f\b\"\\ 😀", "z": 2, "é": 1}`},
	{` [ 1 , {"c" : [ ] , "d":{}} , true,false , null ] `, `[1, {"c": [], "d": {}}, true, false, null]`},
	{`"just a string"`, `"just a string"`},
	{`-12.5E+1`, `-125`}, {`-1.25E+1`, `-12.5`},
}

func testDataForm(t *testing.T, ctx context.Context, s eventstore.Store) {
	events := make([]eventstore.Event, len(dataForms))
	for i, f := range dataForms {
		events[i] = newEvent("Formed", f.in)
	}
	res := mustAppend(t, ctx, s, "order-1", eventstore.NoStream, events)
	got := readStream(t, ctx, s, "order-1", eventstore.ReadStreamOptions{})
	log := readWholeLog(t, ctx, s, eventstore.Start, eventstore.ReadLogOptions{})
	require.Len(t, got, len(dataForms))
	require.Len(t, log, len(dataForms))
	assert.Equal(t, res.Position, log[len(log)-1].Position)
	for i, f := range dataForms {
		assert.Equal(t, f.want, string(got[i].Data), "ReadStream: data %s", f.in)
		assert.Equal(t, f.want, string(log[i].Data), "ReadLog: data %s", f.in)
	}
}

// RecordedAt has PostgreSQL's precision, whole microseconds, in every
// store: a time compared with Equal after a round trip through a database
// is the same time.
func testRecordedAtPrecision(t *testing.T, ctx context.Context, s eventstore.Store) {
	mustAppend(t, ctx, s, "order-1", eventstore.NoStream, numbered("T", 0, 20))
	for _, e := range readStream(t, ctx, s, "order-1", eventstore.ReadStreamOptions{}) {
		assert.Equal(t, e.RecordedAt.Truncate(time.Microsecond), e.RecordedAt, "RecordedAt of event %d has sub-microsecond digits", e.Version)
	}
}

// testUnstorableInput is the input PostgreSQL cannot keep although
// encoding/json accepts it: every store refuses it the same way, with a
// ValidationError that names the field, before writing anything.
func testUnstorableInput(t *testing.T, ctx context.Context, s eventstore.Store) {
	mustAppend(t, ctx, s, "order-1", eventstore.NoStream, numbered("Seeded", 0, 1))
	h := head(t, ctx, s)
	withData := func(data string) eventstore.Event { return newEvent("Bad", data) }
	withMeta := func(m eventstore.Metadata) eventstore.Event {
		e := newEvent("Bad", `{}`)
		e.Metadata = m
		return e
	}
	tests := []struct {
		name  string
		bad   eventstore.Event
		field string // the Reason names it
	}{
		{"NULInData", withData(`{"note":"a\u0000b"}`), "data"},
		{"NULInDataKey", withData(`{"a\u0000":1}`), "data"},
		{"LoneHighSurrogate", withData(`{"note":"\ud83dx"}`), "data"},
		{"LoneLowSurrogate", withData(`["\ude00"]`), "data"},
		{"InvalidUTF8InData", withData("{\"note\":\"\xff\"}"), "data"},
		{"NumberTooLarge", withData(`{"n":1e131072}`), "data"},
		{"NumberTooPrecise", withData(`{"n":1e-16384}`), "data"},
		{"ExponentOverflow", withData(`{"n":0e2147483648}`), "data"},
		{"NULInType", eventstore.Event{ID: uuid.Must(uuid.NewV7()), Type: "Bad\x00", Data: json.RawMessage(`{}`)}, "type"},
		{"NULInCorrelationID", withMeta(eventstore.Metadata{CorrelationID: "c\x00"}), "correlation_id"},
		{"NULInCausationID", withMeta(eventstore.Metadata{CausationID: "c\x00"}), "causation_id"},
		{"NULInMetadataValue", withMeta(eventstore.Metadata{Extra: map[string]string{"note": "a\x00b"}}), `"note"`},
		{"NULInMetadataKey", withMeta(eventstore.Metadata{Extra: map[string]string{"no\x00te": "ab"}}), "metadata"},
		{"InvalidUTF8InMetadataValue", withMeta(eventstore.Metadata{Extra: map[string]string{"note": "\xff"}}), `"note"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			batch := []eventstore.Event{newEvent("Good", `{"i":0}`), tc.bad, newEvent("Good", `{"i":2}`)}
			_, err := s.Append(ctx, "order-1", eventstore.Exact(1), batch)
			require.Error(t, err, "an append PostgreSQL cannot store succeeded")
			require.ErrorIs(t, err, eventstore.ErrInvalidEvent)
			var ve *eventstore.ValidationError
			require.ErrorAs(t, err, &ve)
			assert.Equal(t, 1, ve.Index, "ValidationError.Index")
			assert.Contains(t, ve.Reason, tc.field, "the reason names the field")
			assert.Equal(t, h, head(t, ctx, s), "a refused append moved the head")
			assert.Equal(t, 1, streamLen(t, ctx, s, "order-1"), "a refused append wrote to the stream")
		})
	}
	// The largest numbers PostgreSQL keeps are kept, and escapes that only
	// look like a NUL are not refused.
	ok := []eventstore.Event{
		withData(`{"n":1e131071,"m":1e-16383,"z":0e99999}`),
		withData(`{"note":"\\u0000"}`),
	}
	mustAppend(t, ctx, s, "order-1", eventstore.Exact(1), ok)
	got := readStream(t, ctx, s, "order-1", eventstore.ReadStreamOptions{From: 2})
	require.Len(t, got, 2)
	var n struct{ N, M json.Number }
	require.NoError(t, json.Unmarshal(got[0].Data, &n))
	assert.Equal(t, "1"+strings.Repeat("0", 131071), n.N.String())
	assert.Equal(t, "0."+strings.Repeat("0", 16382)+"1", n.M.String())
	assert.Equal(t, `{"note": "\\u0000"}`, string(got[1].Data))
}
