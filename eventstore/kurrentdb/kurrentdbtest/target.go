package kurrentdbtest

import (
	"context"
	"fmt"
	"os"
	"sync/atomic"
	"testing"
	"time"

	kdb "github.com/kurrent-io/KurrentDB-Client-Go/kurrentdb"

	"github.com/cairn-es/cairn/eventstore/kurrentdb"
)

// EnvURL names the environment variable that points tests at a real
// KurrentDB instead of a stand-in (a connection string such as
// kurrentdb://127.0.0.1:2113?tls=false).
const EnvURL = "KURRENTDB_URL"

// Target is where a test's KurrentDB log lives: the real server EnvURL
// names, in a namespace (stream prefix) of the test's own, since tests
// read the whole log; or a fresh in-process stand-in, whole.
type Target struct {
	URL    string
	Prefix string
}

var namespaces atomic.Int64

// NewTarget returns the test's target: EnvURL's server when it is set,
// else a stand-in started now and closed when the test ends.
func NewTarget(t testing.TB) Target {
	t.Helper()
	if url := os.Getenv(EnvURL); url != "" {
		return Target{URL: url, Prefix: fmt.Sprintf("t%d_%d.", time.Now().UnixNano(), namespaces.Add(1))}
	}
	return On(t, nil)
}

// On is the target of srv (nil: a stand-in started now), for the tests that
// need the stand-in's fault injection even when EnvURL is set.
func On(t testing.TB, srv *Server) Target {
	t.Helper()
	if srv == nil {
		var err error
		if srv, err = Start(); err != nil {
			t.Fatalf("KurrentDB stand-in: %v", err)
		}
		t.Cleanup(srv.Close)
	}
	return Target{URL: srv.ConnectionString()}
}

// Open opens a store on the target with a client of its own, as another
// process would; both close when the test ends. It fails the test when
// the server does not answer.
func (tg Target) Open(t testing.TB) *kurrentdb.Store {
	t.Helper()
	conf, err := kdb.ParseConnectionString(tg.URL)
	if err != nil {
		t.Fatalf("connection string %q: %v", tg.URL, err)
	}
	conf.Logger = kdb.NoopLogging()
	client, err := kdb.NewClient(conf)
	if err != nil {
		t.Fatalf("KurrentDB client for %q: %v", tg.URL, err)
	}
	t.Cleanup(func() { _ = client.Close() })
	s, err := kurrentdb.New(client, kurrentdb.Config{StreamPrefix: tg.Prefix})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := s.Head(ctx); err != nil {
		t.Fatalf("KurrentDB at %s does not answer: %v", tg.URL, err)
	}
	return s
}
