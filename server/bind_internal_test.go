package server

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/cairn-es/cairn/command"
	"github.com/cairn-es/cairn/query"
)

type bindItem struct {
	ID    int64    `param:"id" json:"id"`
	Limit int      `query:"limit" json:"limit"`
	Tags  []string `query:"tag" json:"tags"`
}

type bindDeposit struct {
	Account uint8 `param:"n" json:"account"`
	Amount  int   `json:"amount"`
}

// TestBindingNamesTheBadParameter: echo's binder binds, and a value it
// refuses is a 400 naming the parameter and what it wants.
func TestBindingNamesTheBadParameter(t *testing.T) {
	t.Parallel()
	bus := query.NewBus()
	query.MustRegister(bus, query.HandlerFunc[bindItem, bindItem](func(_ context.Context, q bindItem) (bindItem, error) { return q, nil }))
	// The dispatcher is never reached: binding fails first.
	s, err := New(Config{Logger: slog.New(slog.DiscardHandler), QueryBus: bus, Dispatcher: command.NewDispatcher(nil, command.Config{})})
	require.NoError(t, err)
	MustQuery[bindItem, bindItem](s, "/items/:id")
	MustCommand[bindDeposit](s, "/accounts/:n/deposit")

	serve := func(method, target string) (int, Problem, []byte) {
		var body *strings.Reader
		if method == http.MethodPost {
			body = strings.NewReader(`{"amount":5}`)
		} else {
			body = strings.NewReader("")
		}
		r := httptest.NewRequest(method, target, body)
		if method == http.MethodPost {
			r.Header.Set("Content-Type", "application/json")
		}
		w := httptest.NewRecorder()
		s.ServeHTTP(w, r)
		var p Problem
		if w.Code >= 400 {
			require.NoError(t, json.Unmarshal(w.Body.Bytes(), &p))
		}
		return w.Code, p, w.Body.Bytes()
	}

	for _, tc := range []struct {
		method, target string
		typ, detail    string
	}{
		{"GET", "/items/abc", ProblemInvalidQuery, `path parameter "id": want an integer`},
		{"GET", "/items/99999999999999999999", ProblemInvalidQuery, `path parameter "id": the value is out of range`},
		{"GET", "/items/1?limit=x", ProblemInvalidQuery, `query parameter "limit": want an integer`},
		{"GET", "/items/1?tag=a&limit=1.5", ProblemInvalidQuery, `query parameter "limit": want an integer`},
		{"GET", "/items/1?limit=1&limit=2", ProblemInvalidQuery, `query parameter "limit" given more than once`},
		{"GET", "/items/1?nope=1", ProblemInvalidQuery, `unknown query parameter "nope"`},
		{"POST", "/accounts/300/deposit", ProblemWrongType, `path parameter "n": the value is out of range`},
		{"POST", "/accounts/-1/deposit", ProblemWrongType, `path parameter "n": want a non-negative integer`},
	} {
		status, p, _ := serve(tc.method, tc.target)
		require.Equal(t, http.StatusBadRequest, status, tc.target)
		require.Equal(t, tc.typ, p.Type, tc.target)
		require.Equal(t, tc.detail, p.Detail, tc.target)
	}

	status, _, body := serve("GET", "/items/%31%32?limit=3&tag=a&tag=b")
	require.Equal(t, http.StatusOK, status, string(body))
	require.JSONEq(t, `{"id":12,"limit":3,"tags":["a","b"]}`, string(body), "escaped path parameters are unescaped")
}
