package fulfilment

import (
	"fmt"
	"time"

	"github.com/cairn-es/cairn/eventstore"
	"github.com/cairn-es/cairn/examples/orders/inventory"
	"github.com/cairn-es/cairn/examples/orders/ordering"
	"github.com/cairn-es/cairn/examples/orders/payment"
	"github.com/cairn-es/cairn/examples/orders/shipping"
	"github.com/cairn-es/cairn/saga"
)

// SagaName names the saga (its projection is saga_order_fulfilment).
const SagaName = "order_fulfilment"

// Stages of an order's fulfilment.
const (
	StageReserving  = "reserving"
	StagePaying     = "paying"
	StageShipping   = "shipping"
	StageCompleting = "completing"
	StageCancelling = "cancelling"
)

// Outcomes of the saga, as saga list shows them.
const (
	OutcomeCompleted = "completed"
	OutcomeRejected  = "rejected"
	OutcomeCancelled = "cancelled"
)

// PaymentTimeoutName is the timeout the saga schedules when it asks for
// the payment.
const PaymentTimeoutName = "payment"

// State is one order's fulfilment.
type State struct {
	Stage      string          `json:"stage"`
	CustomerID string          `json:"customer_id"`
	Items      []ordering.Item `json:"items"`
	TotalCents int64           `json:"total_cents"`
	// Awaiting counts reservations asked for and not yet answered.
	Awaiting int `json:"awaiting"`
	// Reserved lists the SKUs whose reservation succeeded.
	Reserved []string `json:"reserved,omitempty"`
	// ShortOf names the first SKU that lacked stock.
	ShortOf string `json:"short_of,omitempty"`
	// PaymentPending: ChargePayment was sent and has not been answered.
	PaymentPending bool `json:"payment_pending"`
	Charged        bool `json:"charged"`
	// ShipmentPending: ScheduleShipment was sent and not yet answered.
	ShipmentPending bool `json:"shipment_pending"`
	// Rejections records transitions the Order refused (a cancel
	// overtook them); the OrderCancelled event drives what follows.
	Rejections []string `json:"rejections,omitempty"`
}

// newSaga defines the saga; paymentTimeout bounds the wait for the payment.
func newSaga(registry *eventstore.Registry, name string, paymentTimeout time.Duration) *saga.Definition[State] {
	d := saga.New[State](name, registry)

	saga.StartOn(d, func(e ordering.OrderPlaced) string { return e.OrderID }, func(c *saga.Context[State], e ordering.OrderPlaced) error {
		c.State = State{Stage: StageReserving, CustomerID: e.CustomerID, Items: e.Items, TotalCents: e.TotalCents, Awaiting: len(e.Items)}
		// The lines' reservations do not depend on each other: they go
		// out together.
		for _, it := range e.Items {
			c.Send(inventory.ReserveInventory{SKU: it.SKU, OrderID: e.OrderID, Quantity: it.Quantity}, saga.Concurrent())
		}
		return nil
	})

	saga.On(d, func(e inventory.InventoryReserved) string { return e.OrderID }, func(c *saga.Context[State], e inventory.InventoryReserved) error {
		c.State.Awaiting--
		if c.State.Stage != StageReserving {
			// The order was cancelled while this reservation was on its
			// way: release it at once.
			undo(c, inventory.ReleaseReservation{SKU: e.SKU, OrderID: e.OrderID})
			finishCancel(c)
			return nil
		}
		c.State.Reserved = append(c.State.Reserved, e.SKU)
		c.AddCompensation(inventory.ReleaseReservation{SKU: e.SKU, OrderID: e.OrderID})
		reservationsAnswered(c, paymentTimeout)
		return nil
	})

	saga.On(d, func(e inventory.InventoryReservationFailed) string { return e.OrderID }, func(c *saga.Context[State], e inventory.InventoryReservationFailed) error {
		c.State.Awaiting--
		if c.State.Stage != StageReserving {
			finishCancel(c)
			return nil
		}
		if c.State.ShortOf == "" {
			c.State.ShortOf = e.SKU
		}
		reservationsAnswered(c, paymentTimeout)
		return nil
	})

	saga.On(d, func(e payment.PaymentCharged) string { return e.OrderID }, func(c *saga.Context[State], e payment.PaymentCharged) error {
		c.State.PaymentPending, c.State.Charged = false, true
		c.CancelTimeout(PaymentTimeoutName)
		if c.State.Stage != StagePaying {
			// Charged after the order was cancelled (the gateway answered
			// after the timeout, or the customer cancelled meanwhile).
			undo(c, payment.RefundPayment{OrderID: e.OrderID})
			finishCancel(c)
			return nil
		}
		c.AddCompensation(payment.RefundPayment{OrderID: e.OrderID})
		c.State.Stage, c.State.ShipmentPending = StageShipping, true
		c.Send(ordering.MarkOrderPaid{OrderID: e.OrderID})
		c.Send(shipping.ScheduleShipment{OrderID: e.OrderID}, saga.Concurrent())
		return nil
	})

	saga.On(d, func(e payment.PaymentFailed) string { return e.OrderID }, func(c *saga.Context[State], e payment.PaymentFailed) error {
		c.State.PaymentPending = false
		c.CancelTimeout(PaymentTimeoutName)
		if c.State.Stage != StagePaying {
			finishCancel(c)
			return nil
		}
		cancel(c, "payment failed: "+e.Reason)
		return nil
	})

	saga.OnTimeout(d, PaymentTimeoutName, func(c *saga.Context[State]) error {
		if c.State.Stage == StagePaying && c.State.PaymentPending {
			cancel(c, fmt.Sprintf("payment not answered within %s", paymentTimeout))
		}
		return nil
	})

	saga.On(d, func(e shipping.ShipmentScheduled) string { return e.OrderID }, func(c *saga.Context[State], e shipping.ShipmentScheduled) error {
		c.State.ShipmentPending = false
		if c.State.Stage != StageShipping {
			undo(c, shipping.CancelShipment{OrderID: e.OrderID})
			finishCancel(c)
			return nil
		}
		c.AddCompensation(shipping.CancelShipment{OrderID: e.OrderID})
		c.State.Stage = StageCompleting
		c.Send(ordering.CompleteOrder{OrderID: e.OrderID})
		return nil
	})

	saga.On(d, func(e ordering.OrderCompleted) string { return e.OrderID }, func(c *saga.Context[State], e ordering.OrderCompleted) error {
		// Reserved stock becomes sold only now: a cancel that overtook
		// CompleteOrder must still find it reserved to release it. One at a
		// time (no saga.Concurrent): nothing waits on them, and in a burst
		// commands queued on the same few products in parallel would hold
		// the relay's slots waiting for their product's turn (with every
		// step concurrent, the burst benchmark completed about a fifth
		// fewer orders per second).
		for _, sku := range c.State.Reserved {
			c.Send(inventory.CommitReservation{SKU: sku, OrderID: e.OrderID})
		}
		c.Complete(OutcomeCompleted)
		return nil
	})

	saga.On(d, func(e ordering.OrderCancelled) string { return e.OrderID }, func(c *saga.Context[State], e ordering.OrderCancelled) error {
		if c.State.Stage == StageCancelling {
			finishCancel(c) // the saga's own CancelOrder
			return nil
		}
		// The customer cancelled: undo every completed step, last first.
		c.Compensate()
		c.State.Stage = StageCancelling
		finishCancel(c)
		return nil
	})

	saga.On(d, func(e ordering.OrderRejected) string { return e.OrderID }, func(c *saga.Context[State], e ordering.OrderRejected) error {
		c.Complete(OutcomeRejected)
		return nil
	})

	saga.OnWithdrawn(d, func(c *saga.Context[State], cmds []saga.Withdrawn) error {
		// A cancel withdrew steps that had not been sent: no answer will
		// come for them, and nothing they would have done needs undoing.
		for _, w := range cmds {
			switch w.Command.(type) {
			case inventory.ReserveInventory:
				c.State.Awaiting--
			case payment.ChargePayment:
				c.State.PaymentPending = false
				c.CancelTimeout(PaymentTimeoutName)
			case shipping.ScheduleShipment:
				c.State.ShipmentPending = false
			}
		}
		finishCancel(c)
		return nil
	})

	saga.OnRejected(d, func(c *saga.Context[State], r saga.Rejection) error {
		// Only the Order's transitions refuse, and only when a cancel
		// overtook them; its OrderCancelled event drives the rest.
		c.State.Rejections = append(c.State.Rejections, r.Type+": "+r.Reason)
		return nil
	})
	return d
}

// reservationsAnswered moves on once every line's reservation is
// answered: to payment, or to rejecting the order.
func reservationsAnswered(c *saga.Context[State], paymentTimeout time.Duration) {
	if c.State.Awaiting > 0 {
		return
	}
	id := c.InstanceID()
	if c.State.ShortOf != "" {
		c.Compensate() // release the lines that were reserved
		c.State.Stage = StageCancelling
		undo(c, ordering.RejectOrder{OrderID: id, Reason: "insufficient stock for " + c.State.ShortOf})
		return // completes on OrderRejected
	}
	c.State.Stage = StagePaying
	c.State.PaymentPending = true
	// The charge waits for the order to accept being reserved (no
	// saga.Concurrent): a customer's cancel that lands first makes
	// MarkOrderReserved refused, and by then the saga has usually handled
	// the cancel and withdrawn the charge, rather than made and refunded it.
	c.Send(ordering.MarkOrderReserved{OrderID: id})
	// The payment's clock starts when the charge is sent: time it spends
	// queued behind other orders' commands is ours, not the gateway's.
	c.Send(payment.ChargePayment{OrderID: id, AmountCents: c.State.TotalCents}, saga.Deadline(PaymentTimeoutName, paymentTimeout))
}

// undo sends a command that takes the order back (a release, a refund, the
// cancel itself): unlike a step forward, it must go out even if the
// fulfilment ends before its turn comes, so it is never withdrawn.
func undo(c *saga.Context[State], cmd any) { c.Send(cmd, saga.Always()) }

// cancel gives up on the order: compensate, then cancel it.
func cancel(c *saga.Context[State], reason string) {
	c.Compensate()
	c.State.Stage = StageCancelling
	undo(c, ordering.CancelOrder{OrderID: c.InstanceID(), Reason: reason})
	finishCancel(c)
}

// finishCancel ends a cancelled fulfilment once nothing it started is
// still on its way: a reservation or a payment that might yet succeed
// must be answered, so that the saga can undo it.
func finishCancel(c *saga.Context[State]) {
	if c.State.Stage == StageCancelling && c.State.Awaiting == 0 && !c.State.PaymentPending && !c.State.ShipmentPending {
		c.Complete(OutcomeCancelled)
	}
}
