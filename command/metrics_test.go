package command_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/cairn-es/cairn/command"
	"github.com/cairn-es/cairn/eventstore"
)

// metricsDispatcher has handlers that exercise every outcome: PlaceOrder
// conflicts twice and then appends two events; cancelOrder is refused.
func metricsDispatcher(t *testing.T, cfg command.Config) *command.Dispatcher {
	t.Helper()
	d := command.NewDispatcher(nil, cfg)
	var calls counter
	command.MustRegister(d, func(context.Context, PlaceOrder) (eventstore.AppendResult, error) {
		calls.inc()
		if calls.get()%3 != 0 {
			return eventstore.AppendResult{}, &eventstore.ConcurrencyError{StreamID: "order-1"}
		}
		return eventstore.AppendResult{StreamID: "order-1", FirstVersion: 1, Version: 2}, nil
	})
	command.MustRegister(d, func(context.Context, *cancelOrder) (eventstore.AppendResult, error) {
		return eventstore.AppendResult{}, command.Reject(errors.New("already shipped"))
	})
	return d
}

func dispatchAll(t *testing.T, d *command.Dispatcher) {
	t.Helper()
	ctx := context.Background()
	_, err := d.Dispatch(ctx, PlaceOrder{OrderID: "1"})
	require.NoError(t, err)
	_, err = d.Dispatch(ctx, &cancelOrder{OrderID: "1"})
	require.ErrorIs(t, err, command.ErrRejected)
	_, err = d.Dispatch(ctx, PlaceOrder{})
	require.ErrorIs(t, err, command.ErrInvalidCommand)
}

// series gathers reg as "name{label=value,...} value" lines, labels in
// name order; histograms as their sample count.
func series(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	families, err := reg.Gather()
	require.NoError(t, err)
	out := map[string]float64{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			key := f.GetName() + "{" + strings.Join(labels, ",") + "}"
			switch {
			case m.GetCounter() != nil:
				out[key] = m.GetCounter().GetValue()
			case m.GetHistogram() != nil:
				out[key] = float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return out
}

func requireMetrics(t *testing.T, reg *prometheus.Registry, rejected, invalid string) {
	t.Helper()
	require.Equal(t, map[string]float64{
		command.MetricRetries + "{command=PlaceOrder}":                         2,
		command.MetricFailed + "{command=CancelOrder,reason=" + rejected + "}": 1,
		command.MetricFailed + "{command=PlaceOrder,reason=" + invalid + "}":   1,
		command.MetricHandled + "{command=CancelOrder,outcome=failed}":         1,
		command.MetricHandled + "{command=PlaceOrder,outcome=failed}":          1,
		command.MetricHandled + "{command=PlaceOrder,outcome=ok}":              1,
		command.MetricEventsAppended + "{command=PlaceOrder}":                  2,
		command.MetricDuration + "{command=CancelOrder}":                       1,
		command.MetricDuration + "{command=PlaceOrder}":                        2,
	}, series(t, reg))
}

// The default chain with Config.Metrics counts each command once (outside
// Retry), its retries, its events and its failure reason: by default the
// outcome word Logging logs.
func TestMetricsInTheDefaultChain(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := command.NewMetrics(command.MetricsConfig{})
	require.NoError(t, m.Register(reg))
	dispatchAll(t, metricsDispatcher(t, command.Config{NoLogging: true, Retry: fastRetry, Metrics: m}))
	requireMetrics(t, reg, "rejected", "invalid")
}

// MetricsConfig.Reason words the reason; a chain of one's own uses the
// metrics' Middleware and Retry.
func TestMetricsReasonAndOwnChain(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := command.NewMetrics(command.MetricsConfig{Reason: func(err error) string {
		if errors.Is(err, command.ErrRejected) {
			return "refused"
		}
		return "other"
	}})
	require.NoError(t, m.Register(reg))
	require.Error(t, m.Register(reg), "registered twice")
	dispatchAll(t, metricsDispatcher(t, command.Config{Chain: []command.Middleware{m.Middleware(), command.Validation(), m.Retry(fastRetry)}}))
	requireMetrics(t, reg, "refused", "other")
}

// NoLogging leaves Logging out of the default chain.
func TestNoLogging(t *testing.T) {
	for _, off := range []bool{false, true} {
		logs := &capture{}
		d := command.NewDispatcher(nil, command.Config{Logger: slog.New(logs), NoLogging: off})
		command.MustRegister(d, func(context.Context, PlaceOrder) (eventstore.AppendResult, error) {
			return eventstore.AppendResult{}, nil
		})
		_, err := d.Dispatch(context.Background(), PlaceOrder{OrderID: "1"})
		require.NoError(t, err)
		want := 1
		if off {
			want = 0
		}
		require.Len(t, logs.all(), want, "NoLogging %v", off)
	}
}
