package projection

// LockKey exposes the advisory lock names to the tests, which look the
// locks up in pg_locks to see who leads and who waits.
func LockKey(kind, storeSchema, name string) string { return lockKey(kind, storeSchema, name) }
