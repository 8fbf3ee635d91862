// Package server is Cairn's HTTP side, on echo: command routes that
// dispatch through a command.Dispatcher, query routes that answer through a
// query.Bus and can wait for their read models to catch up with a client's
// own writes, bearer authentication (JWT or API keys) with per-route scopes,
// RFC 9457 problem responses, and the operations endpoints /healthz,
// /readyz and /metrics.
//
//	// One registry for every subsystem's metrics, served at /metrics.
//	registry := server.NewRegistry()
//	commandMetrics := command.NewMetrics(command.MetricsConfig{Reason: server.FailureReason})
//	_ = commandMetrics.Register(registry)
//	_ = manager.RegisterMetrics(registry)
//	d := command.NewDispatcher(store, command.Config{Metrics: commandMetrics})
//	command.MustRegister(d, placeOrder)
//	bus := query.NewBus()
//	query.MustRegister(bus, query.HandlerFunc[GetOrder, Order](getOrder), query.ReadsFrom("orders"))
//
//	srv, err := server.New(server.Config{
//		Addr:        ":8080",
//		Dispatcher:  d,
//		QueryBus:    bus,
//		Projections: manager,
//		Health:      server.HealthConfig{DB: manager.DB(), Migrations: app.Migrations()},
//		Metrics:     registry,
//	})
//	server.MustCommandWithResponse(srv, "/orders",
//		func(c PlaceOrder, r command.Result) map[string]any {
//			return map[string]any{"order_id": c.OrderID, "command_id": r.CommandID, "position": r.Position}
//		})
//	server.MustQuery[GetOrder, Order](srv, "/orders/:id")
//
//	// The server takes no signals itself: main opts in.
//	ctx, stop := server.SignalContext(context.Background())
//	defer stop()
//	projections := make(chan error, 1)
//	go func() { projections <- manager.Run(ctx) }() // same context: see Run
//	err = srv.Run(ctx)
//	stop()
//	err = errors.Join(err, <-projections)
//
// Like every Cairn constructor, New takes a Config whose zero value is
// usable; per-route variations are functional options (RouteOption).
//
// # Read your writes
//
// A command response carries X-Cairn-Position, the position of the last
// event the command appended. A client that sends it back as
// X-Cairn-Min-Position on a GET is answered only once the projections the
// query reads from (query.ReadsFrom) have processed the log that far, or
// with a 503 after Config.MaxWait.
//
// # Errors
//
// Every error is an application/problem+json body with one of the problem
// types in problems.go (described in problems.md), and a request ID that
// the log line of the request carries too. Responses never contain stack
// traces, SQL or internal error messages.
package server
