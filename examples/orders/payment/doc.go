// Package payment is the payment bounded context of the sample order
// system: it charges an order's total through a payment gateway and
// refunds it when the order is called off.
//
// A payment lives in the stream "payment-<OrderID>". The gateway is an
// outside system that can be slow, fail, or answer after the caller gave
// up, so every charge carries the order ID as its idempotency key: a
// command retried after a timeout, or handled twice concurrently, charges
// the customer once. SimulatedGateway stands in for a real one; like a
// real provider it remembers its charges outside the process (a table of
// its own, in schema Module.Prefix+GatewaySchema), so that a refund after
// a restart finds the charge it refunds.
//
// The context has no HTTP routes and no read model: the fulfilment saga
// sends its commands and reacts to its events.
package payment
