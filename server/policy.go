package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"reflect"

	"github.com/labstack/echo/v4"
)

// ProblemForbidden is the problem type of a request whose caller is
// authenticated and has the route's scopes, but whom the route's policy
// refused for what it asked (someone else's order, say). See problems.md.
const ProblemForbidden = ProblemBase + "forbidden"

// ErrForbidden matches (errors.Is) every refusal of a policy, including
// those made with Forbidden.
var ErrForbidden = errors.New("server: forbidden")

// Forbidden returns the error with which a policy refuses the caller: the
// route answers 403 with the problem type forbidden and detail as its
// detail, which the client sees, so it should say what the caller may do
// rather than what exists.
func Forbidden(detail string) error { return &forbiddenError{detail: detail} }

type forbiddenError struct{ detail string }

func (e *forbiddenError) Error() string { return "server: forbidden: " + e.detail }
func (e *forbiddenError) Unwrap() error { return ErrForbidden }

// routePolicy holds a route's policies until the route is mounted, where
// they are checked against its types.
type routePolicy struct {
	before []any // func(context.Context, Principal, T) error
	after  []any // func(context.Context, Principal, Q, R) error
}

// WithPolicy makes the route check its authenticated caller against the
// command or query bound from the request, after binding and before
// anything else happens: before a read-your-writes wait, the query's
// handler, admission or the dispatcher, so a refused command appends
// nothing. T must be the route's command or query type.
//
// fn refuses with Forbidden (or an error matching ErrForbidden), which the
// route answers 403 (problem type forbidden); a *Problem is answered as
// is; any other error (a lookup that failed) is answered as a handler's
// error would be: a missing subject a 404, an unavailable database a 503.
//
// Policies need a caller: with authentication off they do not run, and
// mounting one on an Anonymous route fails. Several run in order; the
// first refusal answers.
func WithPolicy[T any](fn func(ctx context.Context, p Principal, v T) error) RouteOption {
	return func(r *routeConfig) { r.policy.before = append(r.policy.before, fn) }
}

// WithResultPolicy makes a query route check its authenticated caller
// against the query and its handler's result before answering: for a
// subject whose owner only the read shows (an order fetched by its ID,
// say), without a second read. Refusals and errors are answered as
// WithPolicy's; Q and R must be the route's types.
func WithResultPolicy[Q, R any](fn func(ctx context.Context, p Principal, q Q, res R) error) RouteOption {
	return func(r *routeConfig) { r.policy.after = append(r.policy.after, fn) }
}

// compilePolicy checks, when a route is mounted, that its policies take
// its type T, and returns the check its handler runs on the bound value.
func compilePolicy[T any](route string, rc *routeConfig) (func(echo.Context, T) error, error) {
	fns := make([]func(context.Context, Principal, T) error, 0, len(rc.policy.before))
	for _, p := range rc.policy.before {
		fn, ok := p.(func(context.Context, Principal, T) error)
		if !ok {
			return nil, fmt.Errorf("server: route %s: WithPolicy takes a func(context.Context, server.Principal, %s) error, not %T", route, reflect.TypeFor[T](), p)
		}
		fns = append(fns, fn)
	}
	if err := checkPolicyRoute(route, rc, len(fns)); err != nil {
		return nil, err
	}
	return func(c echo.Context, v T) error {
		ctx := c.Request().Context()
		p, ok := PrincipalFrom(ctx)
		if !ok {
			return nil // authentication is off
		}
		for _, fn := range fns {
			if err := fn(ctx, p, v); err != nil {
				return policyError(err)
			}
		}
		return nil
	}, nil
}

// compileResultPolicy is compilePolicy for WithResultPolicy.
func compileResultPolicy[Q, R any](route string, rc *routeConfig) (func(echo.Context, Q, R) error, error) {
	fns := make([]func(context.Context, Principal, Q, R) error, 0, len(rc.policy.after))
	for _, p := range rc.policy.after {
		fn, ok := p.(func(context.Context, Principal, Q, R) error)
		if !ok {
			return nil, fmt.Errorf("server: route %s: WithResultPolicy takes a func(context.Context, server.Principal, %s, %s) error, not %T",
				route, reflect.TypeFor[Q](), reflect.TypeFor[R](), p)
		}
		fns = append(fns, fn)
	}
	if err := checkPolicyRoute(route, rc, len(fns)); err != nil {
		return nil, err
	}
	return func(c echo.Context, q Q, res R) error {
		ctx := c.Request().Context()
		p, ok := PrincipalFrom(ctx)
		if !ok {
			return nil
		}
		for _, fn := range fns {
			if err := fn(ctx, p, q, res); err != nil {
				return policyError(err)
			}
		}
		return nil
	}, nil
}

// commandPolicy is compilePolicy for a command route, which has no result
// to check.
func commandPolicy[C any](route string, rc *routeConfig) (func(echo.Context, C) error, error) {
	if len(rc.policy.after) > 0 {
		return nil, fmt.Errorf("server: route %s: WithResultPolicy applies to query routes", route)
	}
	return compilePolicy[C](route, rc)
}

// checkPolicyRoute refuses policies on a route that has no caller to check.
func checkPolicyRoute(route string, rc *routeConfig, n int) error {
	if n > 0 && rc.anonymous {
		return fmt.Errorf("server: route %s is Anonymous: it has no caller for its policy to check", route)
	}
	return nil
}

// policyError turns a policy's refusal into its 403; other errors go to
// problemFor like a handler's.
func policyError(err error) error {
	var p *Problem
	if errors.As(err, &p) {
		return p
	}
	if !errors.Is(err, ErrForbidden) {
		return err
	}
	detail := "the caller may not make this request"
	var fe *forbiddenError
	if errors.As(err, &fe) && fe.detail != "" {
		detail = fe.detail
	}
	return NewProblem(http.StatusForbidden, ProblemForbidden, detail).wrap(err)
}
