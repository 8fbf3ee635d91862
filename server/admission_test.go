package server_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cairn-es/cairn/command"
	"github.com/cairn-es/cairn/server"
)

func TestCommandRefusedByAdmissionIs503WithRetryAfterAndWritesNothing(t *testing.T) {
	e := newEnv(t, envOptions{})
	var full atomic.Bool
	full.Store(true)
	srv, err := server.New(server.Config{Logger: quiet,
		Dispatcher: e.d, Health: withHealth(e.store),
		Admission: func(context.Context) error {
			if full.Load() {
				return &command.OverloadedError{Reason: "the saga backlog is past its bound", RetryAfter: 2500 * time.Millisecond}
			}
			return nil
		}})
	require.NoError(t, err)
	server.MustCommand[PlaceOrder](srv, "/orders")
	e.srv = srv

	before := e.state(t)
	res := e.serve(newRequest(t, "POST", "/orders", `{"order_id":"o-1","amount":10}`, hdr{"Idempotency-Key": "k-1"}))
	p := requireProblem(t, res, 503, server.ProblemOverloaded)
	require.Equal(t, "3", res.header.Get("Retry-After"), "the refusal's own Retry-After, rounded up")
	require.Contains(t, p.Detail, "backlog")
	require.Equal(t, before, e.state(t), "a refused command appends nothing")

	// The same request, resent under its key once the backlog drains.
	full.Store(false)
	res = e.serve(newRequest(t, "POST", "/orders", `{"order_id":"o-1","amount":10}`, hdr{"Idempotency-Key": "k-1"}))
	require.Equal(t, 202, res.status, "body: %s", res.body)
	require.Equal(t, before.events+1, e.state(t).events)
}
