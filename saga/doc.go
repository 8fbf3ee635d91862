// Package saga coordinates work that spans aggregates, in both styles.
//
// # Orchestration: sagas
//
// A saga (a process manager) reacts to events, keeps state of its own and
// sends commands through the command dispatcher. Events reach a saga
// instance by a correlation key (an order ID, say); a start event creates
// the instance, and the instance ends when a handler calls Complete or Fail.
//
//	d := saga.New[Fulfilment]("order_fulfilment", registry)
//	saga.StartOn(d, func(e OrderPlaced) string { return e.OrderID },
//		func(c *saga.Context[Fulfilment], e OrderPlaced) error {
//			c.State.Total = e.TotalCents
//			c.Send(ReserveInventory{OrderID: e.OrderID})
//			c.Schedule("reservation", 30*time.Second)
//			return nil
//		})
//	saga.On(d, func(e InventoryReserved) string { return e.OrderID }, ...)
//	saga.OnTimeout(d, "reservation", ...)
//	sagas.MustRegister(d)
//
// Durability: a saga is applied by the projection daemon like a read model,
// so each event is handled once, in a transaction that also writes the
// instance's state, the commands it decided to send (an outbox), its
// timeouts and the checkpoint. The Manager's relay sends those commands
// afterwards. Each command's ID is derived from the saga, the instance and
// the message that caused it, so a command sent again after a crash (sent,
// but not yet marked sent) is recognised by the dispatcher's command log and
// handled once: a payment is never charged twice. One instance's commands
// are sent one at a time, in the order it decided them, except that
// commands a handler marks Concurrent go out together with the one it
// queued just before them (steps that do not depend on each other), and
// what it queued after them waits for the whole group.
//
// Timeouts survive restarts: they are rows, and one fires by being deleted
// in the transaction that hands it to its instance, so it fires exactly
// once however many processes run the manager.
//
// Compensation: a handler registers the compensating command of a step that
// completed (AddCompensation); Compensate sends every registered
// compensation, last registered first.
//
// A command the dispatcher refuses by a domain rule (command.ErrRejected)
// goes back to the saga's OnRejected handler; when there is none, the
// instance runs its registered compensations and fails. Other failures are
// retried with exponential backoff and jitter; a command still failing
// after Config.Retry.MaxAttempts is marked dead and its instance fails, running
// its compensations, which saga list and the metrics show. A dead command
// does not hold back the commands queued after it.
//
// # Choreography: event handlers
//
// A Reactor is a plain event handler (notifications, analytics). It runs
// on the projection daemon too, with its own checkpoint and the same retry
// and dead-letter policies as projections, at least once, and it records
// every event ID it handled so that a redelivery is recognised and skipped.
//
// Sagas and reactors are registered with side effects
// (projection.WithSideEffects): they cannot be rebuilt or reset, since
// replaying the log would repeat what they did.
//
// # Testing a saga
//
// Package saga/sagatest runs a Definition's handlers with no database and
// no real time: given these events (and timeouts, rejections, sends held
// back), when this event or deadline, then these commands sent, these
// compensations, these deadlines, this status and state. Its clock is the
// Context's Now; a Deadline's timer starts when its command is sent, as it
// does under the relay.
package saga
