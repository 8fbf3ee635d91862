package postgres

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/cairn-es/cairn/eventstore"
)

var metadataSamples = []string{
	`{}`,
	` { } `,
	`{"correlation_id": "c1"}`,
	`{"causation_id": "0197a1b2-0000-7000-8000-000000000002", "correlation_id": "0197a1b2-0000-7000-8000-000000000001"}`,
	`{"command_id": "cmd", "causation_id": "cause", "correlation_id": "corr", "extra": {"a": "1", "b": ""}}`,
	`{"extra": {}}`,
	`{"extra": {"k": "v"}, "extra": {"l": "w"}}`,
	`{"extra": {"k": "v", "k": "w"}}`,
	`{"correlation_id": "a", "correlation_id": "b"}`,
	`{"correlation_id": "ünïcødé ✓"}`,
	`{"correlation_id": "with \"escape\""}`,
	`{"correlation_id": "tab\there"}`,
	`{"correlation_id": null}`,
	`{"correlation_id": 1}`,
	`{"Correlation_ID": "case"}`,
	`{"unknown": "x"}`,
	`{"extra": null}`,
	`{"extra": {"n": 1}}`,
	`{"extra": []}`,
	`{"values": {"n": 1, "b": true, "o": {"a": [1, 2]}}, "extra": {"n": "1"}}`,
	`{"values": {}}`,
	`{"correlation_id": "a",}`,
	`{"correlation_id": "a"} x`,
	`{"correlation_id" "a"}`,
	`{"correlation_id": "a"`,
	`{"correlation_id": "\u00e9"}`,
	"{\"correlation_id\": \"\xff\"}",
	`[]`,
	``,
	`null`,
}

// decodeMetadata agrees with json.Unmarshal whenever it answers.
func checkDecodeMetadata(t *testing.T, in string) {
	var want eventstore.Metadata
	wantErr := json.Unmarshal([]byte(in), &want)
	var got eventstore.Metadata
	if !decodeMetadata([]byte(in), &got) {
		return
	}
	require.NoError(t, wantErr, "fast path accepted %q, which json rejects", in)
	require.Equal(t, want, got, "input %q", in)
}

func TestDecodeMetadataMatchesEncodingJSON(t *testing.T) {
	handled := 0
	for _, in := range metadataSamples {
		checkDecodeMetadata(t, in)
		var m eventstore.Metadata
		if decodeMetadata([]byte(in), &m) {
			handled++
		}
	}
	require.GreaterOrEqual(t, handled, 10, "the fast path handles the common shapes")
	var m eventstore.Metadata
	require.True(t, decodeMetadata([]byte(`{"causation_id": "x", "correlation_id": "y"}`), &m))
	require.True(t, decodeMetadata([]byte(`{"extra": {"caused_by": "z"}, "command_id": "c"}`), &m))
}

func FuzzDecodeMetadata(f *testing.F) {
	for _, in := range metadataSamples {
		f.Add(in)
	}
	f.Fuzz(checkDecodeMetadata)
}
