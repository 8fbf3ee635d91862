package app

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// TracingConfig configures tracing (OpenTelemetry): one trace per request,
// from the HTTP edge through the command, its events, the projections and
// sagas that handle them, and the commands the sagas send.
//
// Tracing is off unless Provider is set or the environment asks for it
// (unless Config.NoEnv), as the OpenTelemetry SDK's variables say:
//
//	OTEL_TRACES_EXPORTER=otlp                        on; "none", or unset with no OTLP endpoint: off
//	OTEL_EXPORTER_OTLP_ENDPOINT, ..._TRACES_ENDPOINT  the collector (setting one turns tracing on when OTEL_TRACES_EXPORTER is unset)
//	OTEL_EXPORTER_OTLP_PROTOCOL, ..._TRACES_PROTOCOL  http/protobuf (default) or grpc
//	OTEL_EXPORTER_OTLP_HEADERS, _TIMEOUT, _INSECURE, _CERTIFICATE, _COMPRESSION (and their _TRACES_ forms)
//	OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES      the service's resource
//	OTEL_TRACES_SAMPLER, OTEL_TRACES_SAMPLER_ARG     sampling (default parentbased_always_on)
//	OTEL_BSP_SCHEDULE_DELAY, OTEL_BSP_MAX_QUEUE_SIZE, ...  batching of exports
//	OTEL_SDK_DISABLED=true                           off, whatever else is set
//
// Off, every component takes otel.GetTracerProvider(), which makes no
// spans unless the application installed a provider globally itself; the
// components then write no trace context into events or the saga outbox.
type TracingConfig struct {
	// Provider, when set, makes every component's spans instead of the
	// provider the environment describes; its creator shuts it down.
	Provider trace.TracerProvider
	// ServiceName is the service.name of the traces when
	// OTEL_SERVICE_NAME does not set it (default: the executable's name).
	ServiceName string
}

// shutdownTimeout bounds the export of the spans still queued when the
// App closes.
const shutdownTimeout = 5 * time.Second

// startTracing sets the tracer provider of every component of cfg: cfg's
// own, or the one the environment describes (which the App then owns and
// shuts down on Close). It leaves them nil when tracing is off.
func (a *App) startTracing(ctx context.Context, cfg *Config) error {
	tp := cfg.Tracing.Provider
	if tp == nil && !cfg.NoEnv {
		sdk, err := TracerProviderFromEnv(ctx, cfg.Tracing.ServiceName)
		if err != nil {
			return err
		}
		if sdk != nil {
			tp, a.stopTracing = sdk, sdk.Shutdown
		}
	}
	if tp == nil {
		return nil
	}
	cfg.Tracing.Provider = tp
	setProvider(&cfg.Command.TracerProvider, tp)
	setProvider(&cfg.Projection.TracerProvider, tp)
	setProvider(&cfg.Saga.TracerProvider, tp)
	setProvider(&cfg.Server.TracerProvider, tp)
	return nil
}

// setProvider gives a component tp unless its own configuration names one.
func setProvider(dst *trace.TracerProvider, tp trace.TracerProvider) {
	if *dst == nil {
		*dst = tp
	}
}

// shutdownTracing exports what is queued and stops the provider the App
// built, if it built one.
func (a *App) shutdownTracing() {
	if a.stopTracing == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := a.stopTracing(ctx); err != nil {
		a.cfg.Logger.Warn("cairn: shutting down tracing failed; the last spans may be lost", "error", err)
	}
	a.stopTracing = nil
}

// TracerProviderFromEnv returns an SDK tracer provider exporting over OTLP
// as the OTEL_* environment describes (see TracingConfig), or nil when the
// environment asks for no tracing. serviceName is the service.name unless
// OTEL_SERVICE_NAME sets one (default: the executable's name). The caller
// shuts the provider down, which exports the spans still queued.
// Building it connects to nothing: an unreachable collector costs dropped
// spans and log lines from the exporter, never a failed start.
func TracerProviderFromEnv(ctx context.Context, serviceName string) (*sdktrace.TracerProvider, error) {
	on, err := tracingWanted(os.Getenv)
	if err != nil || !on {
		return nil, err
	}
	exp, err := otlpExporter(ctx, os.Getenv)
	if err != nil {
		return nil, err
	}
	if serviceName == "" {
		serviceName = filepath.Base(os.Args[0])
	}
	// Later options win: the environment's service name and attributes
	// over the default.
	res, err := resource.New(ctx,
		resource.WithAttributes(semconv.ServiceName(serviceName)),
		resource.WithTelemetrySDK(),
		resource.WithFromEnv(),
	)
	if err != nil && res == nil {
		_ = exp.Shutdown(ctx)
		return nil, fmt.Errorf("app: tracing: resource: %w", err)
	}
	return sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res)), nil
}

// tracingWanted reads whether the environment turns tracing on.
func tracingWanted(getenv func(string) string) (bool, error) {
	if strings.EqualFold(strings.TrimSpace(getenv("OTEL_SDK_DISABLED")), "true") {
		return false, nil
	}
	exporters := strings.TrimSpace(getenv("OTEL_TRACES_EXPORTER"))
	if exporters == "" {
		return getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != "", nil
	}
	on := false
	for _, e := range strings.Split(exporters, ",") {
		switch strings.ToLower(strings.TrimSpace(e)) {
		case "otlp":
			on = true
		case "none":
		default:
			return false, fmt.Errorf("app: tracing: OTEL_TRACES_EXPORTER=%q: the supported exporters are otlp and none", exporters)
		}
	}
	return on, nil
}

// otlpExporter returns the OTLP exporter of the protocol the environment
// names; the exporter reads its other OTEL_EXPORTER_OTLP_* settings itself.
func otlpExporter(ctx context.Context, getenv func(string) string) (sdktrace.SpanExporter, error) {
	proto := strings.TrimSpace(getenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"))
	if proto == "" {
		proto = strings.TrimSpace(getenv("OTEL_EXPORTER_OTLP_PROTOCOL"))
	}
	var (
		exp sdktrace.SpanExporter
		err error
	)
	switch proto {
	case "", "http/protobuf":
		exp, err = otlptracehttp.New(ctx)
	case "grpc":
		exp, err = otlptracegrpc.New(ctx)
	default:
		return nil, fmt.Errorf("app: tracing: OTLP protocol %q: the supported protocols are http/protobuf and grpc", proto)
	}
	if err != nil {
		return nil, fmt.Errorf("app: tracing: %w", err)
	}
	return exp, nil
}
