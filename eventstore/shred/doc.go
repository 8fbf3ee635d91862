// Package shred forgets people without rewriting the event log
// (crypto-shredding): the fields an event marks as personal are stored
// encrypted with a key of their own for each data subject, and deleting a
// subject's key makes what the log recorded about them in those fields
// unreadable while every other field of every event stays as it was.
//
// It reaches only the event log. Whatever was decoded and copied out of it
// keeps the personal data in clear until it is rebuilt or deleted:
// aggregate snapshots, read models that projections wrote, messages
// already published to a broker, logs. Rebuild or purge those after a
// Forget. Copies of the key itself may outlive the Forget too (see
// PostgresKeyring: WAL, backups, replicas).
//
// # Marking
//
// An event type marks its personal data with struct tags on string fields,
// and names whose data it is with exactly one subject field:
//
//	type CustomerRegistered struct {
//		CustomerID string `json:"customer_id" cairn:"subject"`
//		Name       string `json:"name"        cairn:"personal"`
//		Email      string `json:"email"       cairn:"personal"`
//		Plan       string `json:"plan"`
//	}
//
// Tagged fields may sit in the event struct or in struct values (named or
// embedded) inside it; not behind pointers, slices, arrays or maps, which
// are refused rather than left in clear. The subject field is stored in
// clear: it is how the key is found. Personal fields that are empty, or
// read exactly Redacted (an event copied from a forgotten one), are stored
// as they are and need no key. A type without tags is left alone.
//
// # Registry
//
// Use(registry, keyring) checks every registered type's marking and makes
// the registry seal on Encode and open on Decode (eventstore.FieldCipher),
// so aggregates, projections and sagas read personal fields in clear and
// never learn about keys. A sealed value is the string "cairn:shred:v1:"
// followed by the base64url key ID, nonce and AES-256-GCM ciphertext. Its
// additional data binds it to its place: format version, key ID, the
// registered event type name, the field's JSON path ("address.street") and
// the subject. A value moved to another field or event type, or whose key
// ID was rewritten, fails to decode with ErrTampered; one moved to another
// subject reads Redacted. Decoding a value without that prefix (one
// recorded before its field was marked) leaves it as it is.
//
// The binding makes renames matter. Renaming a Go field or type is free
// while the json tag and the registered name stay; renaming an event type
// with eventstore.Alias is fine too (Open also tries the aliases). Changing
// the JSON path of a personal field (its json tag, or an upcaster moving
// it) makes the values sealed before fail with ErrTampered.
//
// Once a subject is forgotten (Keyring.Forget), Decode still succeeds: its
// sealed personal fields read Redacted ("[forgotten]"), the rest is intact.
// A subject recorded again after that gets a new key; what was sealed under
// the old one stays forgotten. A keyring that caches keys (PostgresKeyring)
// learns of a Forget in another process within its CacheTTL, and of a new
// key at once: a value sealed under a key other than the cached one makes
// the Cipher read the key past the cache (Refresher).
//
// # Context
//
// Registry.Encode and Decode take no context, so they pass
// context.Background(); EncodeContext and DecodeContext pass the caller's.
// Either way the Cipher bounds every keyring call with its own timeout
// (DefaultKeyTimeout, see KeyTimeout), so a stalled key store fails a
// Decode with an eventstore.FieldCipherError instead of hanging a reader.
package shred
