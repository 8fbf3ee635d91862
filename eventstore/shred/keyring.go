package shred

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"unicode/utf8"

	"github.com/google/uuid"
)

// Errors, wrapped in the typed errors of this package: test with errors.Is.
var (
	// ErrForgotten: the subject has no key (forgotten, or never given one),
	// so what was sealed for it cannot be read. The Cipher turns it into
	// Redacted fields; only a Keyring returns it.
	ErrForgotten = errors.New("shred: subject forgotten")
	// ErrInvalidSubject: an empty subject ID, or one longer than
	// MaxSubjectLength bytes or not UTF-8.
	ErrInvalidSubject = errors.New("shred: invalid subject")
	// ErrInvalidMarking: an event type whose cairn tags cannot work.
	ErrInvalidMarking = errors.New("shred: invalid personal data marking")
	// ErrNoSubject: an event with personal data to seal (or sealed data to
	// open) but an empty subject field.
	ErrNoSubject = errors.New("shred: personal data without a subject")
	// ErrTampered: a sealed value that does not parse or authenticate under
	// its subject's key.
	ErrTampered = errors.New("shred: sealed value tampered with")
	// ErrInvalidOption: an option out of range.
	ErrInvalidOption = errors.New("shred: invalid option")
)

// MaxSubjectLength bounds a subject ID, in bytes.
const MaxSubjectLength = 255

// Key is one subject's data key: a random AES-256 secret and an ID that
// sealed values carry, so a value sealed under a key that was since
// forgotten and replaced is recognised as forgotten.
type Key struct {
	ID     uuid.UUID
	Secret [32]byte
}

// NewKey returns a fresh random key.
func NewKey() (Key, error) {
	k := Key{ID: uuid.New()}
	if _, err := rand.Read(k.Secret[:]); err != nil {
		return Key{}, fmt.Errorf("shred: generating a key: %w", err)
	}
	return k, nil
}

// Keyring keeps one key per data subject. Implementations are safe for
// concurrent use, and concurrent GetOrCreate calls for one subject agree
// on one key.
type Keyring interface {
	// GetOrCreate returns subject's key, creating it when there is none
	// (also after Forget: the new key cannot read what the old one sealed).
	GetOrCreate(ctx context.Context, subject string) (Key, error)
	// Get returns subject's key, or a *KeyError matching ErrForgotten when
	// it has none.
	Get(ctx context.Context, subject string) (Key, error)
	// Forget deletes subject's key from the keyring's store and from this
	// handle's cache; other handles' caches and the store's own copies
	// (backups, for one) are the implementation's to document. Forgetting a
	// subject without a key is not an error.
	Forget(ctx context.Context, subject string) error
}

// Refresher is a Keyring with a cache that other processes' Forget calls
// do not reach (PostgresKeyring): the Cipher calls Refresh when a sealed
// value names another key than the cached one, so that a subject forgotten
// and recorded again elsewhere is read with its new key, not redacted.
type Refresher interface {
	Keyring
	// Refresh returns subject's current key like Get, read past the cache
	// unless the cached key's ID is keyID or keyID is already known to be
	// an earlier key of subject.
	Refresh(ctx context.Context, subject string, keyID uuid.UUID) (Key, error)
}

// KeyError reports a keyring outcome for one subject: Err is ErrForgotten
// or ErrInvalidSubject.
type KeyError struct {
	Subject string
	Err     error
}

func (e *KeyError) Error() string { return fmt.Sprintf("%v: %q", e.Err, e.Subject) }

// Unwrap returns the sentinel.
func (e *KeyError) Unwrap() error { return e.Err }

func forgotten(subject string) error { return &KeyError{Subject: subject, Err: ErrForgotten} }

// checkSubject refuses subject IDs no keyring stores.
func checkSubject(subject string) error {
	if subject == "" || len(subject) > MaxSubjectLength || !utf8.ValidString(subject) {
		return &KeyError{Subject: subject, Err: ErrInvalidSubject}
	}
	return nil
}
