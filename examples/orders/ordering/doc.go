// Package ordering is the ordering bounded context of the sample order
// system: customers place and cancel orders, and the fulfilment saga moves
// them through reservation, payment and completion (or rejection).
//
// An order lives in the stream "order-<OrderID>". Its life cycle:
//
//	pending ──MarkOrderReserved──▶ reserved ──MarkOrderPaid──▶ paid ──CompleteOrder──▶ completed
//	   │                              │                          │
//	   ├──RejectOrder──▶ rejected     └────────CancelOrder───────┴──▶ cancelled
//	   └──CancelOrder──▶ cancelled
//
// The read side keeps two projections: order_summary, one row per order,
// behind GET /orders and GET /orders/:id, and sales_by_day, completed orders
// summed per day, behind GET /stats/sales.
//
// Money is always integer cents.
package ordering
