package command_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cairn-es/cairn/command"
	"github.com/cairn-es/cairn/eventstore"
)

// Restock names its product as its target.
type Restock struct {
	SKU string `json:"sku"`
	N   int    `json:"n"`
}

func (c Restock) Target() string { return "product-" + c.SKU }

// inFlight records the most handlers running at once per key.
type inFlight struct {
	mu        sync.Mutex
	now, most map[string]int
}

func (f *inFlight) enter(key string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.now[key]++
	f.most[key] = max(f.most[key], f.now[key])
}

func (f *inFlight) leave(key string) {
	f.mu.Lock()
	f.now[key]--
	f.mu.Unlock()
}

func TestTargetedCommandsTakeTurns(t *testing.T) {
	d := command.NewDispatcher(nil, quiet)
	f := &inFlight{now: map[string]int{}, most: map[string]int{}}
	var overlapAcross atomic.Int32
	var running atomic.Int32
	command.MustRegister(d, func(ctx context.Context, c Restock) (eventstore.AppendResult, error) {
		f.enter(c.SKU)
		if running.Add(1) > 1 {
			overlapAcross.Store(1)
		}
		time.Sleep(2 * time.Millisecond)
		running.Add(-1)
		f.leave(c.SKU)
		return eventstore.AppendResult{}, nil
	})
	var wg sync.WaitGroup
	for i := range 40 {
		wg.Go(func() {
			_, err := d.Dispatch(context.Background(), Restock{SKU: fmt.Sprint(i % 4), N: i})
			require.NoError(t, err)
		})
	}
	wg.Wait()
	for sku, most := range f.most {
		require.Equal(t, 1, most, "commands on product %s ran one at a time", sku)
	}
	require.EqualValues(t, 1, overlapAcross.Load(), "commands on different products ran at once")
}

func TestTargetedCommandWaitEndsWithItsContext(t *testing.T) {
	d := command.NewDispatcher(nil, quiet)
	inside, leave := make(chan struct{}), make(chan struct{})
	command.MustRegister(d, func(ctx context.Context, c Restock) (eventstore.AppendResult, error) {
		if c.N == 1 {
			close(inside)
			<-leave
		}
		return eventstore.AppendResult{}, nil
	})
	done := make(chan error, 1)
	go func() {
		_, err := d.Dispatch(context.Background(), Restock{SKU: "a", N: 1})
		done <- err
	}()
	<-inside
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	_, err := d.Dispatch(ctx, Restock{SKU: "a", N: 2})
	require.ErrorIs(t, err, context.DeadlineExceeded, "waiting for the turn ends with the context")
	close(leave)
	require.NoError(t, <-done)
	_, err = d.Dispatch(context.Background(), Restock{SKU: "a", N: 3})
	require.NoError(t, err, "the turn is free again")
}
