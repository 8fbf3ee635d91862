// Package shipping is the shipping bounded context of the sample order
// system: it schedules the shipment of a paid order and cancels it when
// the order is called off.
//
// A shipment lives in the stream "shipment-<OrderID>": one per order, with
// an ID derived from the order's, so that scheduling twice names the same
// shipment. The context has no HTTP routes and no read model: the
// fulfilment saga sends its commands and reacts to its events.
package shipping
