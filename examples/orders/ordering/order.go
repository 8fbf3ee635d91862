package ordering

import (
	"errors"
	"fmt"

	"github.com/cairn-es/cairn/aggregate"
)

// Status is where an order is in its life cycle.
type Status string

// The statuses of an order. A new aggregate, not yet placed, has status "".
const (
	StatusPending   Status = "pending"
	StatusReserved  Status = "reserved"
	StatusPaid      Status = "paid"
	StatusCompleted Status = "completed"
	StatusRejected  Status = "rejected"
	StatusCancelled Status = "cancelled"
)

// Valid reports whether s is one of the statuses above.
func (s Status) Valid() bool {
	switch s {
	case StatusPending, StatusReserved, StatusPaid, StatusCompleted, StatusRejected, StatusCancelled:
		return true
	}
	return false
}

// step is a status's place on the happy path (pending, reserved, paid,
// completed), 0 off it. It is what makes the saga's transitions idempotent:
// an order at or past a step has made that transition already.
func (s Status) step() int {
	switch s {
	case StatusPending:
		return 1
	case StatusReserved:
		return 2
	case StatusPaid:
		return 3
	case StatusCompleted:
		return 4
	}
	return 0
}

// Domain refusals. Command methods return them (inside a *StatusError where
// the order's status is the reason); handlers mark them with command.Reject,
// so that HTTP answers 422.
var (
	ErrOrderExists         = errors.New("the order already exists")
	ErrNoItems             = errors.New("an order needs at least one item")
	ErrOrderNotCancellable = errors.New("the order can no longer be cancelled")
	ErrInvalidTransition   = errors.New("the order's status does not allow this")
)

// StatusError reports a command the order's current status does not allow.
// It matches its Err (ErrOrderNotCancellable or ErrInvalidTransition).
type StatusError struct {
	OrderID string
	Status  Status // the order's status
	Action  string // what was refused: "cancel", "reserve", "pay", "complete", "reject"
	Err     error
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("cannot %s order %s: it is %s", e.Action, e.OrderID, e.Status)
}

// Unwrap returns the sentinel the error matches.
func (e *StatusError) Unwrap() error { return e.Err }

// Order is the aggregate behind one order. Its state is what the command
// methods need to decide, nothing more: the items themselves live only in
// OrderPlaced, since no later decision looks at them.
type Order struct {
	aggregate.Base
	CustomerID string `json:"customer_id"`
	Status     Status `json:"status"`
	TotalCents int64  `json:"total_cents"`
	ItemCount  int    `json:"item_count"`
}

// NewOrder returns an empty order, for repositories and tests.
func NewOrder() *Order { return &Order{} }

// Apply changes the state for one event.
func (o *Order) Apply(event any) {
	switch e := event.(type) {
	case OrderPlaced:
		o.CustomerID = e.CustomerID
		o.Status = StatusPending
		o.TotalCents = e.TotalCents
		o.ItemCount = itemCount(e.Items)
	case OrderReserved:
		o.Status = StatusReserved
	case OrderPaid:
		o.Status = StatusPaid
	case OrderCompleted:
		o.Status = StatusCompleted
	case OrderRejected:
		o.Status = StatusRejected
	case OrderCancelled:
		o.Status = StatusCancelled
	}
}

// Place places a new order for items, pricing it once and for all.
func (o *Order) Place(customerID string, items []Item) error {
	if o.Status != "" {
		return ErrOrderExists
	}
	if len(items) == 0 {
		return ErrNoItems
	}
	var total int64
	for _, it := range items {
		total += int64(it.Quantity) * it.UnitPriceCents
	}
	aggregate.Record(o, OrderPlaced{
		OrderID:    o.ID(),
		CustomerID: customerID,
		Items:      items,
		TotalCents: total,
	})
	return nil
}

// Cancel calls the order off while it is not yet completed, rejected or
// cancelled.
func (o *Order) Cancel(reason string, byCustomer bool) error {
	switch o.Status {
	case StatusPending, StatusReserved, StatusPaid:
		aggregate.Record(o, OrderCancelled{OrderID: o.ID(), Reason: reason, ByCustomer: byCustomer})
		return nil
	}
	return &StatusError{OrderID: o.ID(), Status: o.Status, Action: "cancel", Err: ErrOrderNotCancellable}
}

// MarkReserved moves a pending order to reserved.
func (o *Order) MarkReserved() error {
	return o.advance(StatusReserved, "reserve", OrderReserved{OrderID: o.ID()})
}

// MarkPaid moves a reserved order to paid.
func (o *Order) MarkPaid() error {
	return o.advance(StatusPaid, "pay", OrderPaid{OrderID: o.ID()})
}

// Complete moves a paid order to completed.
func (o *Order) Complete() error {
	return o.advance(StatusCompleted, "complete", OrderCompleted{
		OrderID:    o.ID(),
		CustomerID: o.CustomerID,
		TotalCents: o.TotalCents,
		ItemCount:  o.ItemCount,
	})
}

// Reject gives up on a pending order. Rejecting a rejected order does
// nothing, so that a saga may repeat itself.
func (o *Order) Reject(reason string) error {
	switch o.Status {
	case StatusPending:
		aggregate.Record(o, OrderRejected{OrderID: o.ID(), Reason: reason})
		return nil
	case StatusRejected:
		return nil
	}
	return &StatusError{OrderID: o.ID(), Status: o.Status, Action: "reject", Err: ErrInvalidTransition}
}

// advance takes the happy path one step to target, recording event. The
// fulfilment saga sends these commands and may send one again (a redelivery,
// a retry after a timeout), so an order already at or past target is left
// as it is without an error; anything else off the path is refused.
func (o *Order) advance(target Status, action string, event any) error {
	switch {
	case o.Status.step() == target.step()-1:
		aggregate.Record(o, event)
		return nil
	case o.Status.step() >= target.step():
		return nil
	}
	return &StatusError{OrderID: o.ID(), Status: o.Status, Action: action, Err: ErrInvalidTransition}
}

// itemCount counts units, all lines together.
func itemCount(items []Item) int {
	n := 0
	for _, it := range items {
		n += it.Quantity
	}
	return n
}
