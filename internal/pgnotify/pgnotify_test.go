package pgnotify_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/cairn-es/cairn/internal/pgnotify"
	"github.com/cairn-es/cairn/internal/pgtest"
)

// Pokes in a burst share NOTIFYs, each carrying the sender's token; after
// Close a poke sends nothing and does not block.
func TestPokesAreCoalescedAndSigned(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	pool := pgtest.Pool(t, 2)
	channel := "pgnotify_test_" + t.Name()
	listener, err := pgx.ConnectConfig(ctx, pool.Config().ConnConfig.Copy())
	require.NoError(t, err)
	defer listener.Close(context.Background())
	_, err = listener.Exec(ctx, "LISTEN "+pgx.Identifier{channel}.Sanitize())
	require.NoError(t, err)

	s := pgnotify.NewSender(pool, channel, func(err error) { t.Error(err) })
	for range 200 {
		s.Poke()
	}
	note, err := listener.WaitForNotification(ctx)
	require.NoError(t, err)
	require.True(t, s.Own(note.Payload), "the NOTIFY carries the sender's token")
	require.False(t, pgnotify.NewSender(pool, channel, nil).Own(note.Payload), "and no other sender's")
	got := 1
	for {
		wctx, wcancel := context.WithTimeout(ctx, 200*time.Millisecond)
		_, err := listener.WaitForNotification(wctx)
		wcancel()
		if err != nil {
			break
		}
		got++
	}
	require.Less(t, got, 50, "200 pokes in a burst share NOTIFYs")
	s.Close()
	s.Poke() // after Close: nothing, and no panic
}
