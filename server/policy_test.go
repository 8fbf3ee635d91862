package server_test

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"

	"github.com/cairn-es/cairn/query"
	"github.com/cairn-es/cairn/server"
)

// bigOrders is the test policy: orders over 100 need the scope "big".
func bigOrders(_ context.Context, p server.Principal, c PlaceOrder) error {
	if c.Amount > 100 && !p.HasScope("big") {
		return server.Forbidden("orders over 100 need the scope big")
	}
	return nil
}

func bigReads(_ context.Context, p server.Principal, _ GetOrder, o Order) error {
	if o.Amount > 100 && !p.HasScope("big") {
		return server.Forbidden("orders over 100 need the scope big")
	}
	return nil
}

// policyServer serves the env's dependencies with policed routes.
func (e *env) policyServer(t *testing.T, auth server.AuthConfig) *server.Server {
	t.Helper()
	srv, err := server.New(server.Config{Auth: auth, Logger: quiet, MaxWait: 20 * time.Second,
		Dispatcher: e.d, QueryBus: e.bus, Projections: e.mgr, Health: withHealth(e.store)})
	require.NoError(t, err)
	require.NoError(t, server.Command[PlaceOrder](srv, "/orders", server.WithPolicy(bigOrders)))
	require.NoError(t, server.Query[GetOrder, Order](srv, "/orders/:id", server.WithResultPolicy(bigReads)))
	// A policy whose lookup fails, or that answers a problem of its own.
	require.NoError(t, server.Query[OrderEvents, []string](srv, "/orders/:id/events", server.WithPolicy(
		func(_ context.Context, _ server.Principal, q OrderEvents) error {
			switch q.ID {
			case "missing":
				return query.NotFound("order", q.ID)
			case "teapot":
				return server.NewProblem(http.StatusTeapot, "about:blank", "short and stout")
			case "broken":
				return errors.New("the policy's lookup failed")
			}
			return nil
		})))
	return srv
}

func TestPoliciesRefuseWith403AndAppendNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	srv := e.policyServer(t, testAuth)
	serve := func(r *http.Request) response { return (&env{srv: srv}).serve(r) }
	exp := time.Now().Add(time.Hour).Unix()
	small := token(t, jwt.MapClaims{"sub": "alice", "scope": "read write", "exp": exp})
	big := token(t, jwt.MapClaims{"sub": "bob", "scope": "read write big", "exp": exp})
	auth := func(tok string) hdr { return hdr{"Authorization": "Bearer " + tok} }

	before := e.state(t)
	refused := serve(newRequest(t, "POST", "/orders", `{"order_id":"p-big","amount":500}`, auth(small)))
	p := requireProblem(t, refused, http.StatusForbidden, server.ProblemForbidden)
	require.Equal(t, "orders over 100 need the scope big", p.Detail)
	require.Equal(t, "Forbidden", p.Title)
	require.Equal(t, before, e.state(t), "a refused command appended something")
	// An idempotent resubmission by someone allowed is not confused by
	// the refusal: nothing of it was recorded.
	placed := serve(newRequest(t, "POST", "/orders", `{"order_id":"p-big","amount":500}`, auth(big)))
	require.Equal(t, http.StatusAccepted, placed.status, "%s", placed.body)
	require.Equal(t, before.events+1, e.state(t).events)

	// The result policy sees the order the query read.
	pos := placed.header.Get(server.HeaderPosition)
	read := func(tok string) response {
		return serve(newRequest(t, "GET", "/orders/p-big", "", hdr{"Authorization": "Bearer " + tok, server.HeaderMinPosition: pos}))
	}
	requireProblem(t, read(small), http.StatusForbidden, server.ProblemForbidden)
	require.Equal(t, http.StatusOK, read(big).status)
	// A missing order is the query's 404 before any policy looks.
	requireProblem(t, serve(newRequest(t, "GET", "/orders/nope", "", auth(small))), http.StatusNotFound, server.ProblemNotFound)

	// Scopes are checked first: a reader is refused for its scope.
	requireProblem(t, serve(newRequest(t, "POST", "/orders", `{"order_id":"p-2","amount":500}`, auth(readerKey))),
		http.StatusForbidden, server.ProblemInsufficientScope)

	// Other errors of a policy are answered as a handler's.
	requireProblem(t, serve(newRequest(t, "GET", "/orders/missing/events", "", auth(small))), http.StatusNotFound, server.ProblemNotFound)
	require.Equal(t, http.StatusTeapot, serve(newRequest(t, "GET", "/orders/teapot/events", "", auth(small))).status)
	requireProblem(t, serve(newRequest(t, "GET", "/orders/broken/events", "", auth(small))), http.StatusInternalServerError, server.ProblemInternal)
	require.Equal(t, before.events+1, e.state(t).events)
}

// Without authentication there is no caller: the policies do not run.
func TestPoliciesNeedAuthentication(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	srv := e.policyServer(t, server.AuthConfig{})
	res := (&env{srv: srv}).serve(newRequest(t, "POST", "/orders", `{"order_id":"open-big","amount":500}`, hdr{"Authorization": ""}))
	require.Equal(t, http.StatusAccepted, res.status, "%s", res.body)
}

func TestPoliciesAreCheckedWhenMounted(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	srv := e.newServer(t, server.Config{Auth: testAuth}, nil)
	wrongType := server.WithPolicy(func(context.Context, server.Principal, GetOrder) error { return nil })
	require.ErrorContains(t, server.Command[AmendOrder](srv, "/a", wrongType), "WithPolicy takes a func(context.Context, server.Principal, server_test.AmendOrder) error")
	require.Error(t, server.Query[OrderEvents, []string](srv, "/e", wrongType))
	require.ErrorContains(t, server.Command[PlaceOrder](srv, "/p", server.WithResultPolicy(bigReads)), "applies to query routes")
	require.Error(t, server.Query[GetOrder, string](srv, "/g", server.WithResultPolicy(bigReads)), "result type differs")
	require.ErrorContains(t, server.Query[GetOrder, Order](srv, "/anon", server.Anonymous(), server.WithResultPolicy(bigReads)), "Anonymous")
	require.ErrorContains(t, server.Command[PlaceOrder](srv, "/anon", server.Anonymous(), server.WithPolicy(bigOrders)), "Anonymous")
	require.True(t, errors.Is(server.Forbidden("x"), server.ErrForbidden))
}
