package postgres_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/cairn-es/cairn/eventstore"
	"github.com/cairn-es/cairn/internal/pgtest"
)

// AppendJSONB, which the memory store keeps its data in, gives exactly the
// text PostgreSQL prints for jsonb, for random documents full of the cases
// that differ: key order, repeated keys, escapes, numbers in every
// notation.
func TestAppendJSONBMatchesPostgres(t *testing.T) {
	pool := pgtest.Pool(t, 2)
	rng := rand.New(rand.NewPCG(12, 34))
	docs := make([]string, 3000)
	for i := range docs {
		docs[i] = randomJSON(rng, 3)
	}
	var want []string
	require.NoError(t, pool.QueryRow(context.Background(), `SELECT array_agg(d::jsonb::text ORDER BY n) FROM unnest($1::text[]) WITH ORDINALITY AS u(d, n)`, docs).Scan(&want))
	for i, d := range docs {
		got, err := eventstore.AppendJSONB(nil, []byte(d))
		require.NoError(t, err, "%s", d)
		require.Equal(t, want[i], string(got), "%s", d)
	}
}

var (
	jsonKeys    = []string{"a", "b", "A", "aa", "ab", "é", "z", "\\u0061", "k\\u00e9", "", "\\\"q", "long_key_name"}
	jsonStrings = []string{`"x"`, `"\/\b\f\n\r\t\"\\"`, `"\u001f\u007f\u2028"`, `"\ud83d\ude00"`, `"é😀"`, `"\u00E9"`, `""`}
	jsonNumbers = []string{"0", "-0", "1", "-1.50", "1e2", "1E+2", "1.0e1", "1.00e1", "12.5e-3", "-0.0e5", "0.000", "123456789012345678901234567890.123", "5e-20", "9E20", "1e0", "0e-3"}
)

func randomJSON(rng *rand.Rand, depth int) string {
	switch k := rng.IntN(7); {
	case depth > 0 && k < 2:
		n := rng.IntN(6)
		parts := make([]string, n)
		for i := range parts {
			parts[i] = fmt.Sprintf(`"%s" : %s`, jsonKeys[rng.IntN(len(jsonKeys))], randomJSON(rng, depth-1))
		}
		return "{ " + strings.Join(parts, " ,") + "}"
	case depth > 0 && k < 4:
		n := rng.IntN(4)
		parts := make([]string, n)
		for i := range parts {
			parts[i] = randomJSON(rng, depth-1)
		}
		return "[" + strings.Join(parts, ",\n") + " ]"
	case k < 5:
		return jsonStrings[rng.IntN(len(jsonStrings))]
	case k < 6:
		return jsonNumbers[rng.IntN(len(jsonNumbers))]
	}
	return []string{"true", "false", "null"}[rng.IntN(3)]
}
