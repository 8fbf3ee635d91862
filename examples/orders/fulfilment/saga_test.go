package fulfilment

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cairn-es/cairn/eventstore"
	"github.com/cairn-es/cairn/examples/orders/inventory"
	"github.com/cairn-es/cairn/examples/orders/ordering"
	"github.com/cairn-es/cairn/examples/orders/payment"
	"github.com/cairn-es/cairn/examples/orders/shipping"
	"github.com/cairn-es/cairn/saga"
	"github.com/cairn-es/cairn/saga/sagatest"
)

const (
	orderID = "o-1"
	timeout = 30 * time.Second
)

// One order of two lines: a is reserved, charged and shipped first.
var (
	items = []ordering.Item{{SKU: "a", Quantity: 2, UnitPriceCents: 500}, {SKU: "b", Quantity: 1, UnitPriceCents: 1500}}

	// Events.
	placed    = ordering.OrderPlaced{OrderID: orderID, CustomerID: "c-1", Items: items, TotalCents: 2500}
	reservedA = inventory.InventoryReserved{SKU: "a", OrderID: orderID, Quantity: 2}
	reservedB = inventory.InventoryReserved{SKU: "b", OrderID: orderID, Quantity: 1}
	shortA    = inventory.InventoryReservationFailed{SKU: "a", OrderID: orderID, Quantity: 2}
	shortB    = inventory.InventoryReservationFailed{SKU: "b", OrderID: orderID, Quantity: 1}
	charged   = payment.PaymentCharged{OrderID: orderID, ChargeID: "ch-1", AmountCents: 2500}
	declined  = payment.PaymentFailed{OrderID: orderID, AmountCents: 2500, Reason: "card declined"}
	scheduled = shipping.ShipmentScheduled{OrderID: orderID, ShipmentID: "sh-1", ScheduledFor: "2025-01-02"}
	completed = ordering.OrderCompleted{OrderID: orderID, CustomerID: "c-1", TotalCents: 2500, ItemCount: 3}
	rejected  = ordering.OrderRejected{OrderID: orderID, Reason: "insufficient stock for b"}
	// The customer cancels; the saga's own cancel is not by the customer.
	customerCancel = ordering.OrderCancelled{OrderID: orderID, Reason: "changed my mind", ByCustomer: true}
	sagaCancel     = ordering.OrderCancelled{OrderID: orderID, Reason: "payment not answered within 30s"}

	// Commands.
	reserveA     = inventory.ReserveInventory{SKU: "a", OrderID: orderID, Quantity: 2}
	reserveB     = inventory.ReserveInventory{SKU: "b", OrderID: orderID, Quantity: 1}
	releaseA     = inventory.ReleaseReservation{SKU: "a", OrderID: orderID}
	releaseB     = inventory.ReleaseReservation{SKU: "b", OrderID: orderID}
	commitA      = inventory.CommitReservation{SKU: "a", OrderID: orderID}
	commitB      = inventory.CommitReservation{SKU: "b", OrderID: orderID}
	markReserved = ordering.MarkOrderReserved{OrderID: orderID}
	charge       = payment.ChargePayment{OrderID: orderID, AmountCents: 2500}
	refund       = payment.RefundPayment{OrderID: orderID}
	markPaid     = ordering.MarkOrderPaid{OrderID: orderID}
	ship         = shipping.ScheduleShipment{OrderID: orderID}
	cancelShip   = shipping.CancelShipment{OrderID: orderID}
	complete     = ordering.CompleteOrder{OrderID: orderID}
)

// The histories that reach each stage, every command sent.
var (
	reserving  = []any{placed}
	paying     = history(reserving, reservedA, reservedB)
	shipped    = history(paying, charged)
	completing = history(shipped, scheduled)
)

func history(prefix []any, more ...any) []any {
	return append(append([]any(nil), prefix...), more...)
}

func cancelOrder(reason string) ordering.CancelOrder {
	return ordering.CancelOrder{OrderID: orderID, Reason: reason}
}

func newRegistry(t *testing.T) *eventstore.Registry {
	t.Helper()
	r := eventstore.NewRegistry()
	require.NoError(t, errors.Join(
		ordering.Module{}.RegisterEvents(r), inventory.Module{}.RegisterEvents(r),
		payment.Module{}.RegisterEvents(r), shipping.Module{}.RegisterEvents(r)))
	return r
}

// TestFulfilmentSaga covers every branch of the saga, one handling each.
func TestFulfilmentSaga(t *testing.T) {
	send, comp, always, together := sagatest.Send, sagatest.Compensation, saga.Always(), saga.Concurrent()
	cancelled := func(e sagatest.Expect) sagatest.Expect {
		e.Status, e.Outcome = saga.StatusCompleted, OutcomeCancelled
		return e
	}
	for _, tc := range []struct {
		name    string
		given   []any
		when    any
		want    sagatest.Expect
		stage   string // the state's stage after the handling
		ignored bool
	}{
		// The happy path.
		{
			name: "placed: reserve every line", when: placed,
			want: sagatest.Expect{
				Commands: []sagatest.Command{send(reserveA, together), send(reserveB, together)},
				State:    State{Stage: StageReserving, CustomerID: "c-1", Items: items, TotalCents: 2500, Awaiting: 2},
			},
		},
		{
			name: "one line reserved: wait for the other", given: reserving, when: reservedA,
			want: sagatest.Expect{
				Compensations: []any{releaseA},
				State:         State{Stage: StageReserving, CustomerID: "c-1", Items: items, TotalCents: 2500, Awaiting: 1, Reserved: []string{"a"}},
			},
		},
		{
			name: "every line reserved: mark reserved, charge with a deadline from its send", given: history(reserving, reservedA), when: reservedB,
			want: sagatest.Expect{
				Commands:      []sagatest.Command{send(markReserved), send(charge, saga.Deadline(PaymentTimeoutName, timeout))},
				Compensations: []any{releaseA, releaseB},
				State: State{Stage: StagePaying, CustomerID: "c-1", Items: items, TotalCents: 2500,
					Reserved: []string{"a", "b"}, PaymentPending: true},
			},
		},
		{
			name: "charged: cancel the deadline, mark paid, schedule the shipment", given: paying, when: charged,
			want: sagatest.Expect{
				Commands:      []sagatest.Command{send(markPaid), send(ship, together)},
				Cancelled:     []string{PaymentTimeoutName},
				Compensations: []any{releaseA, releaseB, refund},
			},
			stage: StageShipping,
		},
		{
			name: "shipment scheduled: complete the order", given: shipped, when: scheduled,
			want: sagatest.Expect{
				Commands:      []sagatest.Command{send(complete)},
				Compensations: []any{releaseA, releaseB, refund, cancelShip},
			},
			stage: StageCompleting,
		},
		{
			name: "order completed: commit every line, completed", given: completing, when: completed,
			want: sagatest.Expect{
				Commands:      []sagatest.Command{send(commitA), send(commitB)},
				Compensations: []any{releaseA, releaseB, refund, cancelShip},
				Status:        saga.StatusCompleted, Outcome: OutcomeCompleted,
			},
			stage: StageCompleting,
		},

		// Stock.
		{
			name: "a line short after the other was reserved: release it, reject the order", given: history(reserving, reservedA), when: shortB,
			want: sagatest.Expect{
				Commands: []sagatest.Command{comp(releaseA), send(ordering.RejectOrder{OrderID: orderID, Reason: "insufficient stock for b"}, always)},
			},
			stage: StageCancelling,
		},
		{
			name: "the other line reserved after one was short: release it at once, reject", given: history(reserving, shortB), when: reservedA,
			want: sagatest.Expect{
				Commands: []sagatest.Command{comp(releaseA), send(ordering.RejectOrder{OrderID: orderID, Reason: "insufficient stock for b"}, always)},
			},
			stage: StageCancelling,
		},
		{
			name: "every line short: reject naming the first", given: history(reserving, shortA), when: shortB,
			want: sagatest.Expect{
				Commands: []sagatest.Command{send(ordering.RejectOrder{OrderID: orderID, Reason: "insufficient stock for a"}, always)},
			},
			stage: StageCancelling,
		},
		{
			name: "order rejected: rejected", given: history(reserving, reservedA, shortB), when: rejected,
			want:  sagatest.Expect{Status: saga.StatusCompleted, Outcome: OutcomeRejected},
			stage: StageCancelling,
		},

		// Payment.
		{
			name: "payment declined: release last first, cancel the order, cancelled", given: paying, when: declined,
			want: cancelled(sagatest.Expect{
				Commands:  []sagatest.Command{comp(releaseB), comp(releaseA), send(cancelOrder("payment failed: card declined"), always)},
				Cancelled: []string{PaymentTimeoutName},
			}),
			stage: StageCancelling,
		},
		{
			name: "payment not answered in time: release, cancel the order, wait for the charge's answer", given: paying, when: sagatest.Timeout(PaymentTimeoutName),
			want: sagatest.Expect{
				Commands: []sagatest.Command{comp(releaseB), comp(releaseA), send(cancelOrder("payment not answered within 30s"), always)},
			},
			stage: StageCancelling,
		},
		{
			name: "the deadline does not run while the charge is queued", given: history(reserving, reservedA, sagatest.Unsent(reservedB)),
			when: sagatest.Timeout(PaymentTimeoutName), ignored: true,
		},
		{
			name: "the deadline is cancelled by the charge", given: history(paying, charged),
			when: sagatest.Timeout(PaymentTimeoutName), ignored: true,
		},
		{
			name: "charged after the timeout: refund, cancelled", given: history(paying, sagatest.Timeout(PaymentTimeoutName)), when: charged,
			want: cancelled(sagatest.Expect{
				Commands:  []sagatest.Command{send(refund, always)},
				Cancelled: []string{PaymentTimeoutName},
			}),
			stage: StageCancelling,
		},
		{
			name: "declined after the timeout: cancelled", given: history(paying, sagatest.Timeout(PaymentTimeoutName)), when: declined,
			want:  cancelled(sagatest.Expect{Cancelled: []string{PaymentTimeoutName}}),
			stage: StageCancelling,
		},
		{
			name: "its own cancel while the charge is unanswered: keep waiting", given: history(paying, sagatest.Timeout(PaymentTimeoutName)), when: sagaCancel,
			want:  sagatest.Expect{},
			stage: StageCancelling,
		},

		// The customer cancels while reserving.
		{
			name: "cancel while reserving, reservations sent: wait for their answers", given: reserving, when: customerCancel,
			want:  sagatest.Expect{},
			stage: StageCancelling,
		},
		{
			name: "cancel while reserving, reservations unsent: withdrawn, cancelled", given: []any{sagatest.Unsent(placed)}, when: customerCancel,
			want:  cancelled(sagatest.Expect{Withdrawn: []any{reserveA, reserveB}}),
			stage: StageCancelling,
		},
		{
			name: "cancel after one line reserved: release it, wait for the other", given: history(reserving, reservedA), when: customerCancel,
			want:  sagatest.Expect{Commands: []sagatest.Command{comp(releaseA)}},
			stage: StageCancelling,
		},
		{
			name: "a reservation answered after the cancel: release it, cancelled", given: history(reserving, reservedA, customerCancel), when: reservedB,
			want:  cancelled(sagatest.Expect{Commands: []sagatest.Command{send(releaseB, always)}}),
			stage: StageCancelling,
		},
		{
			name: "a reservation failed after the cancel: cancelled", given: history(reserving, reservedA, customerCancel), when: shortB,
			want:  cancelled(sagatest.Expect{}),
			stage: StageCancelling,
		},

		// The customer cancels while paying.
		{
			name: "cancel while paying, charge sent: release last first, wait for the charge", given: paying, when: customerCancel,
			want:  sagatest.Expect{Commands: []sagatest.Command{comp(releaseB), comp(releaseA)}},
			stage: StageCancelling,
		},
		{
			name: "charged after the cancel: refund, cancelled", given: history(paying, customerCancel), when: charged,
			want: cancelled(sagatest.Expect{
				Commands:  []sagatest.Command{send(refund, always)},
				Cancelled: []string{PaymentTimeoutName},
			}),
			stage: StageCancelling,
		},
		{
			name: "declined after the cancel: cancelled", given: history(paying, customerCancel), when: declined,
			want:  cancelled(sagatest.Expect{Cancelled: []string{PaymentTimeoutName}}),
			stage: StageCancelling,
		},
		{
			name: "cancel while paying, charge unsent: withdrawn with its deadline, cancelled", given: history(reserving, reservedA, sagatest.Unsent(reservedB)), when: customerCancel,
			want: cancelled(sagatest.Expect{
				Commands:  []sagatest.Command{comp(releaseB), comp(releaseA)},
				Withdrawn: []any{markReserved, charge},
				Cancelled: []string{PaymentTimeoutName},
			}),
			stage: StageCancelling,
		},

		// The customer cancels while shipping, or completing.
		{
			name: "cancel while shipping, shipment sent: refund, release, wait for the shipment", given: shipped, when: customerCancel,
			want:  sagatest.Expect{Commands: []sagatest.Command{comp(refund), comp(releaseB), comp(releaseA)}},
			stage: StageCancelling,
		},
		{
			name: "shipment scheduled after the cancel: cancel it, cancelled", given: history(shipped, customerCancel), when: scheduled,
			want:  cancelled(sagatest.Expect{Commands: []sagatest.Command{send(cancelShip, always)}}),
			stage: StageCancelling,
		},
		{
			name: "cancel while shipping, shipment unsent: withdrawn, cancelled", given: history(paying, sagatest.Unsent(charged)), when: customerCancel,
			want: cancelled(sagatest.Expect{
				Commands:  []sagatest.Command{comp(refund), comp(releaseB), comp(releaseA)},
				Withdrawn: []any{markPaid, ship},
			}),
			stage: StageCancelling,
		},
		{
			name: "cancel while completing: undo every step last first, cancelled", given: completing, when: customerCancel,
			want: cancelled(sagatest.Expect{
				Commands: []sagatest.Command{comp(cancelShip), comp(refund), comp(releaseB), comp(releaseA)},
			}),
			stage: StageCancelling,
		},
		{
			name: "cancel while completing, completion unsent: withdrawn, cancelled", given: history(shipped, sagatest.Unsent(scheduled)), when: customerCancel,
			want: cancelled(sagatest.Expect{
				Commands:  []sagatest.Command{comp(cancelShip), comp(refund), comp(releaseB), comp(releaseA)},
				Withdrawn: []any{complete},
			}),
			stage: StageCancelling,
		},
		{
			name: "cancel after completion: ignored", given: history(completing, completed), when: customerCancel, ignored: true,
		},

		// Rejections.
		{
			name: "a transition refused: recorded, nothing else", given: shipped, when: sagatest.Rejected(markPaid, "order is cancelled"),
			want: sagatest.Expect{Compensations: []any{releaseA, releaseB, refund}, State: State{
				Stage: StageShipping, CustomerID: "c-1", Items: items, TotalCents: 2500, Reserved: []string{"a", "b"},
				Charged: true, ShipmentPending: true, Rejections: []string{"MarkOrderPaid: order is cancelled"},
			}},
		},
		{
			name: "a rejection after the end: ignored", given: history(paying, declined), when: sagatest.Rejected(charge, "order is cancelled"), ignored: true,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := sagatest.For(t, newSaga(newRegistry(t), SagaName, timeout)).Given(tc.given...).When(tc.when)
			if tc.ignored {
				s.ThenIgnored()
				return
			}
			got := s.Then(tc.want)
			if tc.stage != "" {
				require.Equal(t, tc.stage, got.Stage)
			}
		})
	}
}
