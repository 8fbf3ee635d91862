package postgres_test

import (
	"context"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/cairn-es/cairn/eventstore"
)

// During a rolling upgrade, processes of the previous version call the
// append function with its old signature (no occurred-at times); migration
// 002 keeps it, and its events read back as recorded when they occurred.
func TestPreviousVersionsAppendSignatureStillAppends(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	fn := pgx.Identifier{s.Schema(), "append"}.Sanitize()
	var status string
	var last int64
	err := s.Pool().QueryRow(ctx, `SELECT status, last_version FROM `+fn+`($1, 1::smallint, 0::bigint, $2::uuid[], $3::text[], $4::integer[],
		$5::jsonb[], $6::jsonb[], NULL::text, NULL::text, NULL::bytea)`,
		"old-1", []uuid.UUID{uuid.New()}, []string{"Noted"}, []int32{1}, []string{`{}`}, []string{`{}`}).Scan(&status, &last)
	require.NoError(t, err)
	require.Equal(t, "ok", status)
	require.Equal(t, int64(1), last)
	recs, err := s.ReadStream(ctx, "old-1", eventstore.ReadStreamOptions{})
	require.NoError(t, err)
	require.Len(t, recs, 1)
	require.Equal(t, recs[0].RecordedAt, recs[0].OccurredAt)
}
