// Package shredtest is the acceptance suite of shred.Keyring: every
// implementation runs it, so they all mean the same thing by a key, a
// forgotten subject and a concurrent first use.
package shredtest

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/cairn-es/cairn/eventstore/shred"
)

// Option adjusts the suite to an implementation.
type Option func(*config)

type config struct {
	another func(t *testing.T, kr shred.Keyring) shred.Keyring
}

// WithAnotherHandle gives the suite a second keyring over the same keys as
// kr (as PostgreSQL keyrings on one schema are, each with its own cache),
// for the concurrency test to race two handles as well as one.
func WithAnotherHandle(another func(t *testing.T, kr shred.Keyring) shred.Keyring) Option {
	return func(c *config) { c.another = another }
}

// RunKeyring runs the suite; newKeyring returns an empty keyring.
func RunKeyring(t *testing.T, newKeyring func(t *testing.T) shred.Keyring, opts ...Option) {
	var cfg config
	for _, opt := range opts {
		opt(&cfg)
	}
	t.Run("get or create", func(t *testing.T) { testGetOrCreate(t, newKeyring(t)) })
	t.Run("forget", func(t *testing.T) { testForget(t, newKeyring(t)) })
	t.Run("invalid subject", func(t *testing.T) { testInvalidSubject(t, newKeyring(t)) })
	t.Run("concurrent first use", func(t *testing.T) {
		first := newKeyring(t)
		handles := []shred.Keyring{first}
		if cfg.another != nil {
			handles = append(handles, cfg.another(t, first))
		}
		testConcurrent(t, handles)
	})
}

func testGetOrCreate(t *testing.T, kr shred.Keyring) {
	ctx := context.Background()
	_, err := kr.Get(ctx, "ann")
	requireForgotten(t, err, "ann")

	k, err := kr.GetOrCreate(ctx, "ann")
	require.NoError(t, err)
	require.NotZero(t, k.ID)
	require.NotEqual(t, [32]byte{}, k.Secret)

	again, err := kr.GetOrCreate(ctx, "ann")
	require.NoError(t, err)
	require.Equal(t, k, again)
	got, err := kr.Get(ctx, "ann")
	require.NoError(t, err)
	require.Equal(t, k, got)

	other, err := kr.GetOrCreate(ctx, "bob")
	require.NoError(t, err)
	require.NotEqual(t, k.ID, other.ID)
	require.NotEqual(t, k.Secret, other.Secret)
}

func testForget(t *testing.T, kr shred.Keyring) {
	ctx := context.Background()
	k, err := kr.GetOrCreate(ctx, "ann")
	require.NoError(t, err)
	_, err = kr.GetOrCreate(ctx, "bob")
	require.NoError(t, err)

	require.NoError(t, kr.Forget(ctx, "ann"))
	_, err = kr.Get(ctx, "ann")
	requireForgotten(t, err, "ann")
	_, err = kr.Get(ctx, "bob")
	require.NoError(t, err, "only the forgotten subject loses its key")
	require.NoError(t, kr.Forget(ctx, "ann"), "forgetting twice is not an error")
	require.NoError(t, kr.Forget(ctx, "never-seen"))

	fresh, err := kr.GetOrCreate(ctx, "ann")
	require.NoError(t, err)
	require.NotEqual(t, k.ID, fresh.ID, "a subject recorded again gets a new key")
	require.NotEqual(t, k.Secret, fresh.Secret)
}

func testInvalidSubject(t *testing.T, kr shred.Keyring) {
	ctx := context.Background()
	for _, s := range []string{"", strings.Repeat("x", shred.MaxSubjectLength+1), "\xff"} {
		_, err := kr.GetOrCreate(ctx, s)
		require.ErrorIs(t, err, shred.ErrInvalidSubject)
		var keyErr *shred.KeyError
		require.ErrorAs(t, err, &keyErr)
		_, err = kr.Get(ctx, s)
		require.ErrorIs(t, err, shred.ErrInvalidSubject)
		require.ErrorIs(t, kr.Forget(ctx, s), shred.ErrInvalidSubject)
	}
	_, err := kr.GetOrCreate(ctx, strings.Repeat("x", shred.MaxSubjectLength))
	require.NoError(t, err)
}

// testConcurrent: many first uses of one subject at once, through each
// handle, agree on one key.
func testConcurrent(t *testing.T, handles []shred.Keyring) {
	first := handles[0]
	const perHandle = 16
	for round := range 5 {
		subject := fmt.Sprintf("subject-%d", round)
		keys := make(chan shred.Key, perHandle*len(handles))
		var wg sync.WaitGroup
		for _, kr := range handles {
			for range perHandle {
				wg.Go(func() {
					k, err := kr.GetOrCreate(context.Background(), subject)
					if err != nil {
						t.Error(err)
						return
					}
					keys <- k
				})
			}
		}
		wg.Wait()
		close(keys)
		want, err := first.Get(context.Background(), subject)
		require.NoError(t, err)
		n := 0
		for k := range keys {
			require.Equal(t, want, k, "one key for one subject")
			n++
		}
		require.Equal(t, perHandle*len(handles), n)
	}
}

func requireForgotten(t *testing.T, err error, subject string) {
	t.Helper()
	require.ErrorIs(t, err, shred.ErrForgotten)
	var keyErr *shred.KeyError
	require.ErrorAs(t, err, &keyErr)
	require.Equal(t, subject, keyErr.Subject)
}
