package postgres_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/cairn-es/cairn/eventstore"
	"github.com/cairn-es/cairn/eventstore/postgres"
	"github.com/cairn-es/cairn/internal/pgtest"
)

func TestSmoke(t *testing.T) {
	pool := pgtest.Pool(t, 8)
	schema := pgtest.Schema(t, pool)
	s, err := postgres.New(pool, postgres.Config{Schema: schema})
	require.NoError(t, err)
	defer s.Close()
	ctx := context.Background()
	res, err := s.Append(ctx, "order-1", eventstore.NoStream, []eventstore.Event{{Type: "A", Data: []byte(`{"x":1}`)}, {Type: "B"}}, eventstore.WithCommand(eventstore.CommandRecord{ID: "c1", Type: "T"}))
	require.NoError(t, err)
	t.Logf("%+v", res)
	res2, err := s.Append(ctx, "order-1", eventstore.NoStream, []eventstore.Event{{Type: "A"}}, eventstore.WithCommand(eventstore.CommandRecord{ID: "c1", Type: "T"}))
	require.NoError(t, err)
	t.Logf("%+v", res2)
	_, err = s.Append(ctx, "order-1", eventstore.NoStream, []eventstore.Event{{Type: "A"}})
	t.Log(err)
	evs, err := s.ReadLog(ctx, eventstore.Start, eventstore.ReadLogOptions{})
	require.NoError(t, err)
	for _, e := range evs {
		t.Logf("%+v", e)
	}
	again, err := s.Append(ctx, "order-1", eventstore.Any, []eventstore.Event{{ID: evs[0].ID, Type: "A"}, {ID: evs[1].ID, Type: "B"}})
	t.Log(again, err)
	h, err := s.Head(ctx)
	t.Log(h, err)
	back, err := s.ReadStream(ctx, "order-1", eventstore.ReadStreamOptions{Direction: eventstore.Backward})
	t.Log(len(back), err)
	_, err = s.ReadStream(ctx, "order-2", eventstore.ReadStreamOptions{})
	t.Log(err)
	sub, err := s.Subscribe(ctx, eventstore.Start, eventstore.SubscribeOptions{})
	require.NoError(t, err)
	b, err := sub.NextBatch(ctx)
	t.Log(len(b), err)
	holders, err := s.HeldBackBy(ctx)
	t.Log(holders, err)
}
