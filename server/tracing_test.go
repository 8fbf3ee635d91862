package server_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/cairn-es/cairn/command"
	"github.com/cairn-es/cairn/eventstore"
	"github.com/cairn-es/cairn/eventstore/memory"
	"github.com/cairn-es/cairn/server"
	"github.com/cairn-es/cairn/telemetry"
)

type (
	TraceMe struct {
		ID string `json:"id" param:"id"`
	}
	TraceBroken struct{}
)

// tracedServer serves POST /traced/:id, whose command appends one event
// to the memory store, and POST /broken, whose handler fails.
func tracedServer(t *testing.T, tp trace.TracerProvider) (*httptest.Server, *memory.Store) {
	t.Helper()
	store := memory.New(memory.Config{})
	d := command.NewDispatcher(store, command.Config{Logger: quiet, TracerProvider: tp})
	command.MustRegister(d, func(ctx context.Context, c TraceMe) (eventstore.AppendResult, error) {
		evs := []eventstore.Event{{Type: "Traced", Data: json.RawMessage(`{}`)}}
		cause, _ := eventstore.CausationFrom(ctx)
		return store.Append(ctx, "traced-"+c.ID, eventstore.Any, evs, cause.Stamp(evs)...)
	})
	command.MustRegister(d, func(context.Context, TraceBroken) (eventstore.AppendResult, error) {
		return eventstore.AppendResult{}, errors.New("boom")
	})
	srv, err := server.New(server.Config{Logger: quiet, Dispatcher: d, TracerProvider: tp})
	require.NoError(t, err)
	server.MustCommand[TraceMe](srv, "/traced/:id")
	server.MustCommand[TraceBroken](srv, "/broken")
	ts := httptest.NewServer(srv)
	t.Cleanup(ts.Close)
	return ts, store
}

func post(t *testing.T, url, traceparent string) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(`{}`))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	if traceparent != "" {
		req.Header.Set("traceparent", traceparent)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	return resp.StatusCode
}

const clientTraceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"

func TestRequestSpanContinuesTheClientsTraceAndParentsTheCommand(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	ts, store := tracedServer(t, tp)

	require.Equal(t, http.StatusAccepted, post(t, ts.URL+"/traced/a", clientTraceparent))
	_, err := http.Get(ts.URL + server.HealthPath)
	require.NoError(t, err)

	spans := rec.Ended()
	require.Len(t, spans, 2, "the request and its command; /healthz is not traced")
	cmd, req := spans[0], spans[1]
	require.Equal(t, "POST /traced/:id", req.Name())
	require.Equal(t, trace.SpanKindServer, req.SpanKind())
	require.Equal(t, "0af7651916cd43dd8448eb211c80319c", req.SpanContext().TraceID().String(), "the client's trace")
	require.Equal(t, "b7ad6b7169203331", req.Parent().SpanID().String(), "the client's span is the parent")
	require.True(t, req.Parent().IsRemote())
	attrs := map[string]string{}
	for _, a := range req.Attributes() {
		attrs[string(a.Key)] = a.Value.String()
	}
	require.Equal(t, "/traced/:id", attrs["http.route"])
	require.Equal(t, "202", attrs["http.response.status_code"])
	require.NotEmpty(t, attrs["cairn.request_id"])

	require.Equal(t, "command TraceMe", cmd.Name())
	require.Equal(t, req.SpanContext().SpanID(), cmd.Parent().SpanID(), "the command is the request's child")

	evs, err := store.ReadStream(context.Background(), "traced-a", eventstore.ReadStreamOptions{})
	require.NoError(t, err)
	require.Len(t, evs, 1)
	require.Equal(t, cmd.SpanContext().SpanID(), telemetry.SpanContextOf(evs[0].Metadata.Extra).SpanID())
}

func TestRequestSpanOfAServerErrorIsAnError(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	ts, _ := tracedServer(t, tp)
	require.Equal(t, http.StatusInternalServerError, post(t, ts.URL+"/broken", ""))
	require.Equal(t, http.StatusNotFound, post(t, ts.URL+"/nowhere", ""))

	spans := rec.Ended()
	require.Len(t, spans, 3)
	require.Equal(t, "command TraceBroken", spans[0].Name())
	require.Equal(t, codes.Error, spans[0].Status().Code)
	require.Equal(t, "POST /broken", spans[1].Name())
	require.False(t, spans[1].Parent().IsValid(), "no traceparent sent: a new trace")
	require.Equal(t, codes.Error, spans[1].Status().Code)
	require.Equal(t, "POST", spans[2].Name(), "an unmatched path makes no span name of its own")
	require.Equal(t, codes.Unset, spans[2].Status().Code, "a 404 is the client's mistake")
}

func TestRequestsUntracedWhenTracingIsOff(t *testing.T) {
	ts, store := tracedServer(t, nil) // otel's global provider: none installed
	require.Equal(t, http.StatusAccepted, post(t, ts.URL+"/traced/b", clientTraceparent))
	evs, err := store.ReadStream(context.Background(), "traced-b", eventstore.ReadStreamOptions{})
	require.NoError(t, err)
	require.Len(t, evs, 1)
	require.NotContains(t, evs[0].Metadata.Extra, telemetry.TraceParentKey, "the client's trace context is not passed on")
}
