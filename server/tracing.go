package server

import (
	"net/http"

	"github.com/labstack/echo/v4"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/cairn-es/cairn/telemetry"
)

// AttrRequestID is the span attribute holding the request's ID
// (RequestIDHeader).
const AttrRequestID = attribute.Key("cairn.request_id")

// traced is the outermost middleware: it starts the request's server span,
// named "<METHOD> <route>", as a child of the W3C trace context the client
// sent (traceparent, tracestate), and puts it in the request's context, so
// that the command a route dispatches is its child. The operations
// endpoints are not traced: probes and scrapes would drown the traces
// that matter. With a provider that makes no spans (tracing off) the
// request goes on with its context untouched, the client's trace context
// included: nothing is propagated.
func (s *Server) traced(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		route := c.Path()
		if s.untraced(route) || telemetry.Off(s.cfg.TracerProvider) {
			return next(c)
		}
		req := c.Request()
		parent := propagation.TraceContext{}.Extract(req.Context(), propagation.HeaderCarrier(req.Header))
		method := methodAttr(req.Method)
		name := req.Method
		if method == semconv.HTTPRequestMethodOther {
			name = "HTTP"
		}
		mounted := route != "" && (*s.paths.Load())[route] != nil
		if mounted {
			name += " " + route
		}
		ctx, span := s.tracer.Start(parent, name, trace.WithSpanKind(trace.SpanKindServer))
		defer span.End()
		if !telemetry.Started(parent, span) {
			return next(c)
		}
		c.SetRequest(req.WithContext(ctx))
		if span.IsRecording() {
			span.SetAttributes(method, semconv.URLPath(req.URL.Path), semconv.URLScheme(scheme(req)),
				semconv.ServerAddress(req.Host), semconv.ClientAddress(req.RemoteAddr))
			if mounted {
				span.SetAttributes(semconv.HTTPRoute(route))
			}
			if ua := req.UserAgent(); ua != "" {
				span.SetAttributes(semconv.UserAgentOriginal(ua))
			}
		}
		err := next(c)
		if span.IsRecording() {
			status := c.Response().Status
			span.SetAttributes(semconv.HTTPResponseStatusCode(status), AttrRequestID.String(requestIDOf(c)))
			// Server spans: a 5xx is the server's failure, a 4xx the
			// client's (status left unset).
			if status >= 500 {
				span.SetStatus(codes.Error, http.StatusText(status))
			}
		}
		return err
	}
}

// untraced reports whether route is an operations endpoint.
func (s *Server) untraced(route string) bool {
	return route == HealthPath || route == ReadyPath || (s.cfg.MetricsPath != "-" && route == s.cfg.MetricsPath)
}

// methodAttr is the semantic-conventions attribute of an HTTP method:
// "_OTHER" for one not in the HTTP specifications.
func methodAttr(m string) attribute.KeyValue {
	switch m {
	case http.MethodGet:
		return semconv.HTTPRequestMethodGet
	case http.MethodHead:
		return semconv.HTTPRequestMethodHead
	case http.MethodPost:
		return semconv.HTTPRequestMethodPost
	case http.MethodPut:
		return semconv.HTTPRequestMethodPut
	case http.MethodPatch:
		return semconv.HTTPRequestMethodPatch
	case http.MethodDelete:
		return semconv.HTTPRequestMethodDelete
	case http.MethodOptions:
		return semconv.HTTPRequestMethodOptions
	case http.MethodConnect:
		return semconv.HTTPRequestMethodConnect
	case http.MethodTrace:
		return semconv.HTTPRequestMethodTrace
	}
	return semconv.HTTPRequestMethodOther
}

func scheme(r *http.Request) string {
	if r.TLS != nil {
		return "https"
	}
	return "http"
}
