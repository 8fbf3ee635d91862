package app_test

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cairn-es/cairn/app"
	"github.com/cairn-es/cairn/eventstore"
	"github.com/cairn-es/cairn/eventstore/kurrentdb/kurrentdbtest"
)

func TestIsKurrentDBURL(t *testing.T) {
	for s, want := range map[string]bool{
		"kurrentdb://127.0.0.1:2113?tls=false": true,
		"kurrentdb+discover://cluster:2113":    true,
		"esdb://a:2113,b:2113,c:2113":          true,
		"KDB://host":                           true,
		"kurrent://host":                       true,
		"postgres://postgres@127.0.0.1/x":      false,
		"127.0.0.1:2113":                       false,
		"postgres":                             false,
		"":                                     false,
	} {
		require.Equal(t, want, app.IsKurrentDBURL(s), s)
	}
}

// OpenKurrentDB opens a working store, namespaced by cairnStreamPrefix
// (which the client never sees), and its close function releases it.
func TestOpenKurrentDB(t *testing.T) {
	srv, err := kurrentdbtest.Start()
	require.NoError(t, err)
	t.Cleanup(srv.Close)
	ctx := context.Background()

	store, closeStore, err := app.OpenKurrentDB(ctx, srv.ConnectionString()+"&cairnStreamPrefix=shop.", nil)
	require.NoError(t, err)
	res, err := store.Append(ctx, "order-1", eventstore.NoStream, []eventstore.Event{{Type: "OrderPlaced"}})
	require.NoError(t, err)
	require.Equal(t, int64(1), res.Version)
	closeStore()

	// The event is in KurrentDB stream "shop.order-1": a store without
	// the prefix sees it under that name.
	plain := kurrentdbtest.On(t, srv).Open(t)
	events, err := plain.ReadStream(ctx, "shop.order-1", eventstore.ReadStreamOptions{})
	require.NoError(t, err)
	require.Len(t, events, 1)
	require.Equal(t, res.Position, events[0].Position)
}

func TestOpenKurrentDBProblems(t *testing.T) {
	ctx := context.Background()
	_, _, err := app.OpenKurrentDB(ctx, "postgres://u:hunter22@db/x", nil)
	require.ErrorIs(t, err, app.ErrNotKurrentDB)
	require.NotContains(t, err.Error(), "hunter22")

	_, _, err = app.OpenKurrentDB(ctx, "kurrentdb://127.0.0.1:2113?tls=false&cairnStreamPrefix=a/b", nil)
	require.ErrorIs(t, err, eventstore.ErrInvalidStreamID)
	require.ErrorContains(t, err, "cairnStreamPrefix")

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	start := time.Now()
	_, _, err = app.OpenKurrentDB(ctx, "kurrentdb://admin:hunter22@"+addr+"?tls=false", nil)
	require.ErrorContains(t, err, `KurrentDB at "kurrentdb://admin:xxxxx@`+addr+`?tls=false" does not answer`)
	require.NotContains(t, err.Error(), "hunter22")
	require.Less(t, time.Since(start), app.KurrentDBCheckTimeout+5*time.Second)
}
