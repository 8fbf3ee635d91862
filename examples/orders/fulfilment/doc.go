// Package fulfilment is the order-fulfilment saga of the sample order
// system: the orchestration that moves an order from placed to completed,
// or to rejected or cancelled with everything it did undone.
//
//	OrderPlaced ─▶ ReserveInventory (one per line)
//	  all InventoryReserved ─▶ MarkOrderReserved, ChargePayment, timeout "payment"
//	    PaymentCharged ─▶ MarkOrderPaid, ScheduleShipment
//	      ShipmentScheduled ─▶ CompleteOrder
//	        OrderCompleted ─▶ CommitReservation (one per line) ─▶ completed
//	  any InventoryReservationFailed ─▶ release the reserved lines, RejectOrder ─▶ rejected
//	  PaymentFailed, or no answer in time ─▶ release, CancelOrder ─▶ cancelled
//	  OrderCancelled (the customer) ─▶ undo what was done, last first ─▶ cancelled
//
// Each completed step registers its compensation (ReleaseReservation per
// line, RefundPayment, CancelShipment), and a failure or a cancel sends
// them in reverse order. A payment that succeeds after the order was
// cancelled (the gateway answered after the timeout) is refunded.
//
// The payment timeout runs from when ChargePayment is sent (saga.Deadline),
// not from when it was queued: a burst or an outage on our side does not
// cancel orders whose payment was never asked for. A cancel withdraws the
// forward steps that were queued and not yet sent (OnWithdrawn accounts
// for them); the steps that take the order back are sent with
// saga.Always, so that they go out whatever comes first.
//
// The saga never asks the order whether it may proceed: the Order aggregate
// refuses a transition that a cancel overtook (MarkOrderPaid on a cancelled
// order), and the OrderCancelled event, which the saga handles in log
// order, is what starts the compensation.
package fulfilment
