package shred

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/cairn-es/cairn/migrations"
)

// DefaultCacheSize is how many keys a PostgresKeyring keeps in memory
// unless CacheSize says otherwise: enough for the subjects a service is
// busy with, small enough (about 100 KiB) to never matter.
const DefaultCacheSize = 1024

// DefaultCacheTTL is how long a PostgresKeyring trusts a cached key unless
// CacheTTL says otherwise: the longest another process's Forget goes
// unnoticed (see PostgresKeyring).
const DefaultCacheTTL = time.Minute

//go:embed sql/*.sql
var sqlFiles embed.FS

// Migrations is the keyring's table, subject_keys. NewPostgresKeyring
// applies it; it is exported for services that migrate every owner's set
// up front (migrations.Up), as app does for the event store's.
func Migrations() migrations.Set {
	return migrations.Embedded("shred", sqlFiles, "sql")
}

// Migrate creates the keyring's table in schema, or brings it up to date.
// Running it again, or concurrently, is harmless.
func Migrate(ctx context.Context, pool *pgxpool.Pool, schema string) error {
	if err := migrations.ValidateSchema(schema); err != nil {
		return err
	}
	return migrations.UpPool(ctx, pool, schema, Migrations())
}

// KeyringOption configures a PostgresKeyring.
type KeyringOption func(*keyringConfig)

type keyringConfig struct {
	cacheSize int
	cacheTTL  time.Duration
}

// CacheSize sets how many keys the keyring caches, least recently used
// out first (DefaultCacheSize when not given; at least 1).
func CacheSize(n int) KeyringOption {
	return func(c *keyringConfig) { c.cacheSize = n }
}

// CacheTTL sets how long a cached key is used before it is read from the
// table again (DefaultCacheTTL when not given; d > 0). It bounds how long
// this process goes on using a key that another process forgot.
func CacheTTL(d time.Duration) KeyringOption {
	return func(c *keyringConfig) { c.cacheTTL = d }
}

// PostgresKeyring keeps keys in the subject_keys table of a schema, with a
// bounded cache in front, each entry kept for at most CacheTTL.
//
// Forget deletes the row and evicts the key from this process's cache.
// Other processes' caches are not told; for up to CacheTTL after a Forget
// they may still open what the key sealed, and GetOrCreate may still seal
// new events under it (those read as forgotten everywhere once the
// entries expire). A value sealed under a key newer than the cached one
// (the subject was forgotten and recorded again elsewhere) is never
// mistaken for forgotten: the Cipher then reads the key past the cache
// (Refresh).
//
// Deleting the row does not destroy every copy of the key: it survives in
// PostgreSQL's WAL, in backups and on replicas until they age out, and
// restoring a backup taken before the Forget brings the key back and
// undoes the Forget (forget the subject again after a restore). Bound the
// retention of WAL archives, backups and replicas by what your erasure
// promise allows.
type PostgresKeyring struct {
	pool   *pgxpool.Pool
	schema string
	table  string
	cache  *lru
}

var _ Refresher = (*PostgresKeyring)(nil)

// NewPostgresKeyring migrates the keyring's table in schema (see Migrate)
// and returns a keyring over it. A bad schema name or option returns an
// error and touches nothing.
func NewPostgresKeyring(ctx context.Context, pool *pgxpool.Pool, schema string, opts ...KeyringOption) (*PostgresKeyring, error) {
	cfg := keyringConfig{cacheSize: DefaultCacheSize, cacheTTL: DefaultCacheTTL}
	for _, opt := range opts {
		opt(&cfg)
	}
	if cfg.cacheSize < 1 {
		return nil, fmt.Errorf("%w: cache size %d is below 1", ErrInvalidOption, cfg.cacheSize)
	}
	if cfg.cacheTTL <= 0 {
		return nil, fmt.Errorf("%w: cache TTL %v is not positive", ErrInvalidOption, cfg.cacheTTL)
	}
	if err := Migrate(ctx, pool, schema); err != nil {
		return nil, fmt.Errorf("shred: migrating the keyring: %w", err)
	}
	return &PostgresKeyring{
		pool:   pool,
		schema: schema,
		table:  pgx.Identifier{schema, "subject_keys"}.Sanitize(),
		cache:  newLRU(cfg.cacheSize, cfg.cacheTTL),
	}, nil
}

// Schema returns the schema of the keyring's table.
func (p *PostgresKeyring) Schema() string { return p.schema }

// createAttempts bounds GetOrCreate's insert-or-read loop, which repeats
// only when a Forget deletes the key between its insert and its read.
const createAttempts = 3

// GetOrCreate implements Keyring. Concurrent calls, in this process or
// others, agree on one key: the first insert wins and the others read it.
func (p *PostgresKeyring) GetOrCreate(ctx context.Context, subject string) (Key, error) {
	if err := checkSubject(subject); err != nil {
		return Key{}, err
	}
	if k, ok := p.cache.get(subject); ok {
		return k, nil
	}
	epoch := p.cache.begin()
	for range createAttempts {
		k, err := p.load(ctx, subject)
		if err == nil {
			p.cache.put(subject, k, epoch)
			return k, nil
		}
		if !errors.Is(err, ErrForgotten) {
			return Key{}, err
		}
		if k, err = NewKey(); err != nil {
			return Key{}, err
		}
		// ON CONFLICT DO NOTHING: a concurrent creator won; read its key
		// on the next turn, in a statement that sees its commit.
		tag, err := p.pool.Exec(ctx, "INSERT INTO "+p.table+" (subject, key_id, secret) VALUES ($1, $2, $3) ON CONFLICT (subject) DO NOTHING",
			subject, k.ID, k.Secret[:])
		if err != nil {
			return Key{}, fmt.Errorf("shred: creating the key of %q: %w", subject, err)
		}
		if tag.RowsAffected() == 1 {
			p.cache.put(subject, k, epoch)
			return k, nil
		}
	}
	return Key{}, fmt.Errorf("shred: creating the key of %q: forgotten %d times while being created", subject, createAttempts)
}

// Get implements Keyring.
func (p *PostgresKeyring) Get(ctx context.Context, subject string) (Key, error) {
	if err := checkSubject(subject); err != nil {
		return Key{}, err
	}
	if k, ok := p.cache.get(subject); ok {
		return k, nil
	}
	epoch := p.cache.begin()
	k, err := p.load(ctx, subject)
	if err != nil {
		return Key{}, err
	}
	p.cache.put(subject, k, epoch)
	return k, nil
}

// Refresh implements Refresher: it reads subject's key from the table
// unless the cached key has keyID or keyID is known to be an earlier key
// of subject, and caches what it reads. A subject whose row is gone is
// evicted and reported forgotten.
func (p *PostgresKeyring) Refresh(ctx context.Context, subject string, keyID uuid.UUID) (Key, error) {
	if err := checkSubject(subject); err != nil {
		return Key{}, err
	}
	if k, ok := p.cache.get(subject); ok && (k.ID == keyID || p.cache.isStale(subject, keyID)) {
		return k, nil
	}
	epoch := p.cache.begin()
	k, err := p.load(ctx, subject)
	if errors.Is(err, ErrForgotten) {
		p.cache.forget(subject) // forgotten elsewhere: drop our copy now
	}
	if err != nil {
		return Key{}, err
	}
	p.cache.put(subject, k, epoch)
	p.cache.markStale(subject, keyID)
	return k, nil
}

// Forget implements Keyring: it deletes the row, then evicts the key from
// the cache (in that order, so no reader caches it again in between).
func (p *PostgresKeyring) Forget(ctx context.Context, subject string) error {
	if err := checkSubject(subject); err != nil {
		return err
	}
	if _, err := p.pool.Exec(ctx, "DELETE FROM "+p.table+" WHERE subject = $1", subject); err != nil {
		return fmt.Errorf("shred: forgetting %q: %w", subject, err)
	}
	p.cache.forget(subject)
	return nil
}

// load reads subject's key from the table.
func (p *PostgresKeyring) load(ctx context.Context, subject string) (Key, error) {
	var (
		id     uuid.UUID
		secret []byte
	)
	err := p.pool.QueryRow(ctx, "SELECT key_id, secret FROM "+p.table+" WHERE subject = $1", subject).Scan(&id, &secret)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return Key{}, forgotten(subject)
	case err != nil:
		return Key{}, fmt.Errorf("shred: reading the key of %q: %w", subject, err)
	case len(secret) != len(Key{}.Secret):
		return Key{}, fmt.Errorf("shred: the key of %q has %d bytes, want 32", subject, len(secret))
	}
	k := Key{ID: id}
	copy(k.Secret[:], secret)
	return k, nil
}
