package main

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cairn-es/cairn/app"
	"github.com/cairn-es/cairn/eventstore"
	"github.com/cairn-es/cairn/eventstore/kurrentdb/kurrentdbtest"
	"github.com/cairn-es/cairn/examples/orders"
)

// kurrentTarget is the KurrentDB the sample's log goes to: a fresh
// in-process stand-in the command's process reaches over TCP, or
// KURRENTDB_URL, where the test's log gets a namespace of its own (the
// read side replays the whole log: another run's orders would be this
// one's too). storeURL is what --store gets: the target's URL with its
// namespace.
func kurrentTarget(t *testing.T) (storeURL string, target kurrentdbtest.Target) {
	t.Helper()
	target = kurrentdbtest.NewTarget(t)
	if target.Prefix == "" {
		return target.URL, target
	}
	sep := "?"
	if strings.Contains(target.URL, "?") {
		sep = "&"
	}
	return target.URL + sep + app.StreamPrefixParam + "=" + target.Prefix, target
}

// summaryInts returns the integers of the summary line that starts with
// label, in order.
func summaryInts(t *testing.T, out, label string) []int64 {
	t.Helper()
	line := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(label) + `.*$`).FindString(out)
	require.NotEmpty(t, line, "the summary has a line %q", label)
	var ns []int64
	for _, m := range regexp.MustCompile(`\b[0-9]+\b`).FindAllString(line[len(label):], -1) {
		n, err := strconv.ParseInt(m, 10, 64)
		require.NoError(t, err)
		ns = append(ns, n)
	}
	return ns
}

// The demo with its log in KurrentDB (--store) and everything else in
// PostgreSQL: every order ends final, the saga's outcomes match the
// orders', the gateway's charges add up, no projection lags, the events it
// counts are the events KurrentDB holds, and PostgreSQL holds no log. The
// operations commands, told the log by $CAIRN_STORE, verify every read
// model against a replay of the KurrentDB log.
func TestDemoWithTheLogInKurrentDB(t *testing.T) {
	storeURL, target := kurrentTarget(t)
	log := target.Open(t)
	ctx := context.Background()
	before, err := log.Head(ctx)
	require.NoError(t, err)
	dbURL, pool := freshDatabase(t)

	const placed = 40
	r := runOrders(t, dbURL, "demo", "--exit", "--addr", "127.0.0.1:0", "--database-url", dbURL, "--store", storeURL,
		"--orders", strconv.Itoa(placed), "--skus", "3", "--stock", "25", "--concurrency", "4")
	require.Equal(t, 0, r.code, "exit status")
	require.Contains(t, r.out, "Event log: KurrentDB at "+storeURL+" (from --store)")
	require.Contains(t, r.out, fmt.Sprintf("All %d orders reached a final state", placed))

	final := summaryInts(t, r.out, "Orders by final state:")
	require.Len(t, final, 3)
	completed, rejected, cancelled := final[0], final[1], final[2]
	require.Equal(t, int64(placed), completed+rejected+cancelled)
	require.Equal(t, final, summaryInts(t, r.out, "Saga outcomes:"), "each order's saga ended as the order did")
	gw := summaryInts(t, r.out, "Payment gateway:")
	require.Len(t, gw, 3)
	require.Equal(t, completed, gw[0]-gw[2], "charged minus refunded is the completed orders")
	lags := summaryInts(t, r.out, "Projection lag (events):")
	require.Equal(t, make([]int64, len(orders.Projections(orders.Config{}))), lags, "no read model lags")

	// The log is in KurrentDB, all of it.
	appended := summaryInts(t, r.out, "Events appended:")
	require.Len(t, appended, 1)
	inKurrent, err := eventstore.CountLog(ctx, log, before, eventstore.ReadLogOptions{})
	require.NoError(t, err)
	require.Equal(t, inKurrent, appended[0], "the events the demo counted are KurrentDB's")
	placedEvents, err := eventstore.CountLog(ctx, log, before, eventstore.ReadLogOptions{Types: []string{"OrderPlaced"}})
	require.NoError(t, err)
	require.Equal(t, int64(placed), placedEvents)
	var pgLog bool
	require.NoError(t, pool.QueryRow(ctx, `SELECT to_regclass('cairn.events') IS NOT NULL`).Scan(&pgLog))
	require.False(t, pgLog, "PostgreSQL holds no event table")
	var instances int
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM cairn.saga_instances`).Scan(&instances))
	require.Equal(t, placed, instances, "the saga state is in PostgreSQL")

	// The operations commands read the log where $CAIRN_STORE says.
	t.Setenv(EnvStore, storeURL)
	for _, name := range orders.Projections(orders.Config{}) {
		v := runOrders(t, dbURL, "projection", "rebuild", name, "--verify", "--database-url", dbURL)
		require.Equal(t, 0, v.code, "%s equals a replay of the KurrentDB log", name)
	}
}

// --store takes precedence over $CAIRN_STORE, which takes precedence over
// the PostgreSQL default; anything else is refused, naming its source.
func TestStoreChoice(t *testing.T) {
	env := func(v string) func(string) string {
		return func(name string) string {
			if name == EnvStore {
				return v
			}
			return ""
		}
	}
	const kurrent = "kurrentdb://127.0.0.1:2113?tls=false"
	for _, c := range []struct {
		flag, env string
		want      storeChoice
		err       string
	}{
		{},
		{flag: "postgres", env: kurrent},
		{env: "postgres"},
		{flag: kurrent, env: "esdb://elsewhere:2113", want: storeChoice{url: kurrent, from: "--store"}},
		{env: "esdb+discover://cluster:2113", want: storeChoice{url: "esdb+discover://cluster:2113", from: "$CAIRN_STORE"}},
		{flag: "mysql://root@db/shop", err: `--store "mysql://root@db/shop": want postgres or a KurrentDB connection string`},
		{env: "127.0.0.1:2113", err: `$CAIRN_STORE "127.0.0.1:2113": want postgres`},
	} {
		f := systemFlags{store: c.flag}
		got, err := f.chooseStore(env(c.env))
		if c.err != "" {
			require.ErrorContains(t, err, c.err, "%+v", c)
			continue
		}
		require.NoError(t, err, "%+v", c)
		require.Equal(t, c.want, got, "%+v", c)
	}
}

// A bad --store fails the start before anything is bound or touched; a
// KurrentDB that does not answer fails it within the check's timeout,
// naming the URL and the flag, and frees the address.
func TestStoreProblemsAreNamed(t *testing.T) {
	dbURL, pool := freshDatabase(t)
	before := contents(t, pool)
	addr := freeAddr(t)
	r := runOrders(t, dbURL, "serve", "--addr", addr, "--database-url", dbURL, "--store", "mysql://root@db/shop")
	require.Equal(t, 1, r.code)
	require.Contains(t, r.err, `--store "mysql://root@db/shop": want postgres or a KurrentDB connection string`)

	nobody := "kurrentdb://" + freeAddr(t) + "?tls=false"
	r = runOrders(t, dbURL, "demo", "--exit", "--addr", addr, "--database-url", dbURL, "--store", nobody)
	require.Equal(t, 1, r.code)
	require.Contains(t, r.err, "KurrentDB at \""+nobody+"\" does not answer")
	require.Contains(t, r.err, "(from --store)")
	require.Less(t, r.elapsed, 30*time.Second)
	require.Equal(t, before, contents(t, pool), "the database changed")
	require.NotContains(t, r.out, "serving")
}
