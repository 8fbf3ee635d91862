// Package command dispatches commands to their handlers, exactly once per
// command ID.
//
// A command is a plain Go value named verb-noun (PlaceOrder, CancelOrder).
// Its type name is the Go type's name, or what its CommandName() string
// method returns. Each command type has exactly one handler, registered at
// start-up with Register; a second registration for the same type is an
// error (ErrDuplicateHandler), and dispatching a type nobody registered is
// one too (ErrUnknownCommand).
//
//	d := command.NewDispatcher(store, command.Config{})
//	command.MustRegister(d, func(ctx context.Context, cmd PlaceOrder) (eventstore.AppendResult, error) {
//		// load the aggregate, decide, save: the repository reads the
//		// command's eventstore.Causation from ctx.
//	})
//	res, err := d.Dispatch(ctx, PlaceOrder{OrderID: "o-1"})
//
// # Envelopes and idempotency
//
// Dispatch accepts a bare command or an Envelope around it. The envelope's ID
// is the command's idempotency key: a client that may resend a command (after
// a timeout, a lost response, a redelivered message) supplies the ID itself,
// and the dispatcher generates a UUIDv7 when it does not. CorrelationID, when
// empty, is the command's ID.
//
// Before running a handler the dispatcher asks the event store's CommandLog
// whether the ID was handled already. If it was, with the same payload (the
// SHA-256 of the payload's JSON encoding), Dispatch returns the recorded
// result with Duplicate set and does not run the handler; with a different
// payload it returns an *eventstore.IdempotencyKeyReusedError.
//
// Otherwise the handler runs with a context carrying an eventstore.Causation
// (see eventstore.WithCausation). The aggregate repository reads it when
// saving: it stamps the command's correlation ID, and the command's ID as the
// causation ID, on every event, and has the store record the command in the
// same transaction as the events. That record, not the look-up, is what
// makes handling exactly-once: two submissions of one ID that race past the
// look-up both reach the store, which commits one and answers the other with
// the first result and Duplicate set (or with a concurrency conflict, which
// the retry middleware turns into a fresh look-up that finds the record).
//
// A command whose handler appends no events is not recorded: a repository
// with nothing to save does not call the store, so there is no transaction to
// record the command in. Dispatching it again runs the handler again, which
// is harmless: it appended nothing the first time, and whatever it decides
// now is decided against the current state.
//
// # Middleware
//
// Handlers run inside a chain of Middleware. The default chain, outermost
// first, is Logging, Timeout (when Config.Timeout is set), the metrics'
// middleware (when Config.Metrics is set), Config.Middleware, Validation
// and Retry (with Config.Retry, a retry.Policy); Config.Chain replaces it
// entirely. See NewDispatcher for why that order.
//
// # Metrics
//
// Metrics (NewMetrics) count every command's outcome, failure reason,
// duration, appended events and retries, as Prometheus collectors that the
// application registers where it is scraped (app registers them in the
// registry its server serves) and gives the dispatcher in Config.Metrics.
package command
