package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/cairn-es/cairn/command"
	"github.com/cairn-es/cairn/eventstore"
	"github.com/cairn-es/cairn/server"
)

// FuzzCommand exercises every kind of field the binder decodes. Its
// handler appends nothing, so fuzzing writes nothing.
type FuzzCommand struct {
	ID     string               `json:"-" param:"id"`
	Name   string               `json:"name"`
	Count  int32                `json:"count"`
	Ratio  float64              `json:"ratio"`
	Tags   []string             `json:"tags"`
	At     *time.Time           `json:"at,omitempty"`
	Pos    *eventstore.Position `json:"pos,omitempty"`
	Flags  map[string]bool      `json:"flags"`
	Nested struct {
		A uint8 `json:"a"`
	} `json:"nested"`
}

func (c FuzzCommand) Validate() error {
	if len(c.Name) > 64 {
		return errors.New("name is too long")
	}
	return nil
}

func registerFuzzCommand(d *command.Dispatcher) {
	command.MustRegister(d, func(ctx context.Context, c FuzzCommand) (eventstore.AppendResult, error) {
		if c.Count < 0 {
			return eventstore.AppendResult{}, command.Reject(errors.New("count must not be negative"))
		}
		return eventstore.AppendResult{}, nil
	})
}

// FuzzBindCommand sends random bodies and headers to a command route: the
// server never panics, never answers 500, and answers 202 with JSON or
// 400/415/422 with a problem of a known type.
func FuzzBindCommand(f *testing.F) {
	seeds := []struct{ body, ct, key, corr, id string }{
		{`{"name":"a","count":1}`, "application/json", "k-1", "c-1", "x"},
		{`{"name":"a","count":-1}`, "application/json", "", "", "x"},
		{`{"name":"` + strings.Repeat("n", 65) + `"}`, "application/json", "", "", "x"},
		{`{"nmae":"a"}`, "application/json", "", "", "x"},
		{`{"count":"1"}`, "application/json", "", "", "x"},
		{`{"count":1e99}`, "application/json", "", "", "x"},
		{`{"at":"yesterday"}`, "application/json", "", "", "x"},
		{`{"pos":"1.2.3"}`, "application/json", "", "", "x"},
		{`{"pos":"1.2","tags":["a"],"flags":{"x":true},"nested":{"a":255}}`, "application/json; charset=utf-8", "", "", "x"},
		{`{"nested":{"a":256}}`, "application/json", "", "", "x"},
		{`{} {}`, "application/json", "", "", "x"},
		{`[{}]`, "application/json", "", "", "x"},
		{`null`, "application/json", "", "", "x"},
		{`{"name":"\ud800"}`, "application/problem+json", "", "", "x"},
		{``, "", "", "", "x"},
		{`{"name":"a"}`, "text/plain", "", "", "x"},
		{`{"name":"a"}`, "", "", "", "x"},
		{`{"name":"a"}`, "application/json; charset=latin1", "", "", "x"},
		{`{"name":"a"}`, "application/json", "bad\x00key", "", "x"},
		{`{"name":"a"}`, "application/json", strings.Repeat("k", 201), "", "x"},
		{`{"name":"a"}`, "application/json", "", "\xff\xfe", "x"},
		{`{"name":"a"}`, "application/json", "", "", "a/b%zz'; DROP TABLE x;--"},
		{"\xef\xbb\xbf{}", "application/json", "", "", "x"},
		{`{"name":"a","name":"b"}`, "application/json", "", "", "x"},
	}
	for _, s := range seeds {
		f.Add([]byte(s.body), s.ct, s.key, s.corr, s.id)
	}
	e := newEnv(f, envOptions{})
	f.Fuzz(func(t *testing.T, body []byte, ct, key, corr, id string) {
		r := httptest.NewRequest(http.MethodPost, "/fuzz/"+url.PathEscape("x"+id), bytes.NewReader(body))
		if ct != "" {
			r.Header["Content-Type"] = []string{ct}
		}
		if key != "" {
			r.Header[server.HeaderIdempotencyKey] = []string{key}
		}
		if corr != "" {
			r.Header[server.HeaderCorrelationID] = []string{corr}
		}
		r.Header.Set("Authorization", "Bearer "+writerKey)
		res := e.serve(r)
		switch res.status {
		case http.StatusAccepted:
			if res.header.Get("Content-Type") != "application/json" {
				t.Fatalf("202 with Content-Type %q", res.header.Get("Content-Type"))
			}
			var out server.CommandResponse
			if err := json.Unmarshal(res.body, &out); err != nil || out.CommandID == "" {
				t.Fatalf("202 with body %q", res.body)
			}
			if key != "" && out.CommandID != strings.TrimSpace(key) {
				t.Fatalf("command ID %q, want the idempotency key %q", out.CommandID, key)
			}
		case http.StatusBadRequest, http.StatusUnsupportedMediaType, http.StatusUnprocessableEntity:
			if res.header.Get("Content-Type") != server.ProblemContentType {
				t.Fatalf("%d with Content-Type %q", res.status, res.header.Get("Content-Type"))
			}
			var p server.Problem
			if err := json.Unmarshal(res.body, &p); err != nil {
				t.Fatalf("problem body %q: %v", res.body, err)
			}
			if p.Status != res.status || !strings.HasPrefix(p.Type, server.ProblemBase) || p.Title == "" {
				t.Fatalf("problem %+v for status %d", p, res.status)
			}
			if bytes.Contains(res.body, []byte("goroutine ")) || bytes.Contains(res.body, []byte(".go:")) {
				t.Fatalf("problem leaks internals: %s", res.body)
			}
		default:
			t.Fatalf("status %d, body %s", res.status, res.body)
		}
	})
}
