package kurrentdb_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"testing"
	"time"

	kdb "github.com/kurrent-io/KurrentDB-Client-Go/kurrentdb"
	"github.com/stretchr/testify/require"

	"github.com/cairn-es/cairn/eventstore"
	"github.com/cairn-es/cairn/eventstore/kurrentdb"
	"github.com/cairn-es/cairn/eventstore/kurrentdb/kurrentdbtest"
	"github.com/cairn-es/cairn/eventstore/storetest"
)

// realServer is the KurrentDB the tests use instead of the stand-in, from
// KURRENTDB_URL (a connection string such as
// kurrentdb://127.0.0.1:2113?tls=false).
func realServer() string { return os.Getenv("KURRENTDB_URL") }

// namespaces makes each store's StreamPrefix unique on a shared server.
var namespaces atomic.Int64

// newClient connects to url; the test closes the client at its end.
func newClient(t testing.TB, url string) *kdb.Client {
	t.Helper()
	conf, err := kdb.ParseConnectionString(url)
	if err != nil {
		t.Fatalf("connection string %q: %v", url, err)
	}
	client, err := kdb.NewClient(conf)
	if err != nil {
		t.Fatalf("KurrentDB client for %q: %v", url, err)
	}
	t.Cleanup(func() { _ = client.Close() })
	return client
}

// newStandIn starts an in-process stand-in server for the test.
func newStandIn(t testing.TB) *kurrentdbtest.Server {
	t.Helper()
	srv, err := kurrentdbtest.Start()
	if err != nil {
		t.Fatalf("stand-in server: %v", err)
	}
	t.Cleanup(srv.Close)
	return srv
}

// newStore returns a store with an empty log: on a fresh stand-in, or on
// the real server in a namespace of its own (the suite reads the whole
// log, so a shared server needs one).
func newStore(t testing.TB, cfg kurrentdb.Config) *kurrentdb.Store {
	t.Helper()
	url := realServer()
	if url == "" {
		url = newStandIn(t).ConnectionString()
	} else if cfg.StreamPrefix == "" {
		cfg.StreamPrefix = fmt.Sprintf("t%d_%d.", time.Now().UnixNano(), namespaces.Add(1))
	}
	return newStoreOn(t, newClient(t, url), cfg)
}

func newStoreOn(t testing.TB, client *kdb.Client, cfg kurrentdb.Config) *kurrentdb.Store {
	t.Helper()
	s, err := kurrentdb.New(client, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// TestAcceptance runs the shared suite, the full-size ordering proof
// included, on a fresh stand-in per subtest (or on KURRENTDB_URL).
func TestAcceptance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) eventstore.Store { return newStore(t, kurrentdb.Config{}) }, storetest.WithEventIDsUniquePerStream())
}

// TestAcceptanceNamespaced runs the suite with every store in a namespace
// of its own on one shared server: each sees only its own log.
func TestAcceptanceNamespaced(t *testing.T) {
	url := realServer()
	if url == "" {
		url = newStandIn(t).ConnectionString()
	}
	client := newClient(t, url)
	storetest.Run(t, func(t *testing.T) eventstore.Store {
		return newStoreOn(t, client, kurrentdb.Config{StreamPrefix: fmt.Sprintf("ns%d_%d-", time.Now().UnixNano(), namespaces.Add(1))})
	}, storetest.WithOrderingProofSize(4, 500), storetest.WithEventIDsUniquePerStream())
}

func TestSnapshots(t *testing.T) {
	storetest.RunSnapshots(t, func(t *testing.T) eventstore.SnapshotStore { return newStore(t, kurrentdb.Config{}) })
}

// KurrentDB has no index by event ID nor by time: the store offers no
// EventReader, and refuses a log read bounded by time rather than ignore
// the bound.
func TestQueriesUnsupported(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	s := newStore(t, kurrentdb.Config{})
	_, isReader := any(s).(eventstore.EventReader)
	require.False(t, isReader, "the store must not claim EventReader")
	_, err := s.Append(ctx, "order-1", eventstore.NoStream, []eventstore.Event{{Type: "T"}})
	require.NoError(t, err)
	events, err := s.ReadLog(ctx, eventstore.Start, eventstore.ReadLogOptions{Since: time.Now().Add(-time.Hour)})
	require.Empty(t, events)
	require.ErrorIs(t, err, eventstore.ErrUnsupportedOption)
	require.ErrorIs(t, err, errors.ErrUnsupported)
	var ue *eventstore.UnsupportedOptionError
	require.ErrorAs(t, err, &ue)
	require.Equal(t, "ReadLogOptions.Since", ue.Option)
	_, err = eventstore.CountLog(ctx, s, eventstore.Start, eventstore.ReadLogOptions{Since: time.Now()})
	require.ErrorIs(t, err, eventstore.ErrUnsupportedOption, "CountLog passes the bound on")
}
