// Package inventory is the inventory bounded context of the sample order
// system: stock per SKU, reserved for orders, then sold or released.
//
// Each SKU is one aggregate, in the stream "inventory-<SKU>". It holds
// every unit ever added in exactly one of three places, available, reserved
// (per order) or sold, so that available + reserved + sold == added at
// every version. Since a popular SKU's stream grows with every order, its
// repository keeps snapshots.
//
// A reservation that cannot be met is not an error: it is a fact,
// InventoryReservationFailed, that the fulfilment saga reacts to by
// rejecting the order.
//
// The read side keeps inventory_levels, one row per SKU, behind
// GET /inventory/:sku.
package inventory
