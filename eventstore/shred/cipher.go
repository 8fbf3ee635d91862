package shred

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/cairn-es/cairn/eventstore"
)

// Redacted replaces a personal field whose subject was forgotten.
const Redacted = "[forgotten]"

// DefaultKeyTimeout bounds each keyring call of a Cipher unless KeyTimeout
// says otherwise.
const DefaultKeyTimeout = 5 * time.Second

// sealedPrefix starts every sealed value; the version lets the format
// change without misreading old values.
const sealedPrefix = "cairn:shred:v1:"

const (
	nonceSize  = 12
	gcmTagSize = 16
)

// CipherOption configures a Cipher.
type CipherOption func(*Cipher)

// KeyTimeout bounds each keyring call (d > 0; DefaultKeyTimeout when not
// given). Registry.Encode and Decode have no deadline of their own.
func KeyTimeout(d time.Duration) CipherOption {
	return func(c *Cipher) { c.timeout = d }
}

// Cipher seals and opens the personal fields of events with a Keyring: it
// is the eventstore.FieldCipher that Use installs. Safe for concurrent use.
type Cipher struct {
	keys     Keyring
	registry *eventstore.Registry // names event types; set by Use
	timeout  time.Duration
	plans    sync.Map // reflect.Type → *plan or error
}

var _ eventstore.FieldCipher = (*Cipher)(nil)

// NewCipher returns a Cipher over keys that can Check event types. It
// knows no registry, so it cannot name the event types that sealed values
// are bound to: its Seal and Open refuse marked types with a
// *MarkingError. Use makes the Cipher a registry needs.
func NewCipher(keys Keyring, opts ...CipherOption) (*Cipher, error) {
	c := &Cipher{keys: keys, timeout: DefaultKeyTimeout}
	for _, opt := range opts {
		opt(c)
	}
	if keys == nil {
		return nil, fmt.Errorf("%w: nil keyring", ErrInvalidOption)
	}
	if c.timeout <= 0 {
		return nil, fmt.Errorf("%w: key timeout %v is not positive", ErrInvalidOption, c.timeout)
	}
	return c, nil
}

// Use makes r seal and open personal fields with keys: it checks the
// marking of every type registered so far (a *MarkingError for the first
// bad one, and r is left as it was) and installs a Cipher. Types registered
// later are checked on their first Encode or Decode.
func Use(r *eventstore.Registry, keys Keyring, opts ...CipherOption) (*Cipher, error) {
	c, err := NewCipher(keys, opts...)
	if err != nil {
		return nil, err
	}
	for _, name := range r.Names() {
		info, _ := r.Lookup(name)
		if err := c.Check(info.GoType); err != nil {
			return nil, err
		}
	}
	c.registry = r
	r.UseFieldCipher(c)
	return c, nil
}

// Check reports whether the cairn tags of event type t can work: nil for a
// well-marked type or one without tags, a *MarkingError otherwise.
func (c *Cipher) Check(t reflect.Type) error {
	_, err := c.planFor(t)
	return err
}

// work is what Seal or Open has to do to an event: its personal fields
// whose values want says need it, with the subject and the registered type
// name; nil when there is nothing to do.
type work struct {
	v                 reflect.Value
	fields            []field
	subject, typeName string
}

func (c *Cipher) work(event any, want func(string) bool) (*work, error) {
	v, p, err := c.target(event)
	if err != nil || p == nil {
		return nil, err
	}
	w := &work{v: v}
	for _, f := range p.personal {
		if want(v.FieldByIndex(f.index).String()) {
			w.fields = append(w.fields, f)
		}
	}
	if len(w.fields) == 0 {
		return nil, nil
	}
	if w.subject = v.FieldByIndex(p.subject.index).String(); w.subject == "" {
		return nil, &FieldError{GoType: v.Type(), Field: p.subject.name, Err: ErrNoSubject}
	}
	if w.typeName, err = c.typeName(v); err != nil {
		return nil, err
	}
	return w, nil
}

// Seal implements eventstore.FieldCipher: it encrypts the personal fields
// of *event in place under its subject's key, creating the key for a new
// subject. Empty fields and fields that read Redacted (an event copied from
// a forgotten one) are left as they are: sealing them would create a key
// for nothing to protect.
func (c *Cipher) Seal(ctx context.Context, event any) error {
	w, err := c.work(event, func(s string) bool { return s != "" && s != Redacted })
	if err != nil || w == nil {
		return err
	}
	v, todo, subject, typeName := w.v, w.fields, w.subject, w.typeName
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	key, err := c.keys.GetOrCreate(ctx, subject)
	if err != nil {
		return err
	}
	aead, err := newAEAD(key)
	if err != nil {
		return err
	}
	for _, f := range todo {
		fv := v.FieldByIndex(f.index)
		sealed, err := seal(aead, key.ID, additionalData(key.ID, typeName, f.path, subject), fv.String())
		if err != nil {
			return err
		}
		fv.SetString(sealed)
	}
	return nil
}

// Open implements eventstore.FieldCipher: it decrypts the sealed personal
// fields of *event in place, or sets them to Redacted when their key is
// forgotten. Fields that are not sealed are left alone.
func (c *Cipher) Open(ctx context.Context, event any) error {
	w, err := c.work(event, func(s string) bool { return strings.HasPrefix(s, sealedPrefix) })
	if err != nil || w == nil {
		return err
	}
	v, todo, subject, typeName := w.v, w.fields, w.subject, w.typeName
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	o := &opener{keys: c.keys, subject: subject, typeName: typeName, aliases: func() []string { return c.aliases(typeName) }}
	if err := o.use(c.keys.Get(ctx, subject)); err != nil {
		return err
	}
	for _, f := range todo {
		fv := v.FieldByIndex(f.index)
		plain, err := o.open(ctx, f.path, fv.String())
		if errors.Is(err, ErrTampered) {
			return &FieldError{GoType: v.Type(), Field: f.name, Err: err}
		}
		if err != nil {
			return err
		}
		fv.SetString(plain)
	}
	return nil
}

// typeName returns the registered name of the event v, which the sealed
// values of its fields are bound to.
func (c *Cipher) typeName(v reflect.Value) (string, error) {
	if c.registry != nil {
		if name, ok := c.registry.TypeName(v.Addr().Interface()); ok {
			return name, nil
		}
	}
	return "", &MarkingError{GoType: v.Type(), Reason: "not registered in the registry of the cipher (make it with Use)"}
}

// aliases returns the names the type registered as name had before: its
// values may have been sealed under them.
func (c *Cipher) aliases(name string) []string {
	info, _ := c.registry.Lookup(name)
	return info.Aliases
}

// opener opens the sealed fields of one event, all of one subject.
type opener struct {
	keys      Keyring
	subject   string
	typeName  string
	aliases   func() []string // looked up only when typeName fails
	forgotten bool
	key       Key
	aead      cipher.AEAD
}

// use makes key (the outcome of a keyring call) the subject's current key.
func (o *opener) use(key Key, err error) error {
	if errors.Is(err, ErrForgotten) {
		o.forgotten = true
		return nil
	}
	if err != nil {
		return err
	}
	o.key = key
	o.aead, err = newAEAD(key)
	return err
}

// open returns the plain text of the sealed value at JSON path path.
func (o *opener) open(ctx context.Context, path, sealed string) (string, error) {
	keyID, nonce, ct, err := parseSealed(sealed)
	if err != nil || o.forgotten {
		return Redacted, err
	}
	if keyID != o.key.ID {
		// The cached key may be older than the value's (forgotten and
		// recorded again in another process): read the current one.
		if r, ok := o.keys.(Refresher); ok {
			if err := o.use(r.Refresh(ctx, o.subject, keyID)); err != nil || o.forgotten {
				return Redacted, err
			}
		}
	}
	if keyID != o.key.ID {
		// Sealed under a key since forgotten, unless it opens under the
		// current key: then someone rewrote its key ID.
		if _, ok := o.try(o.key.ID, path, nonce, ct); ok {
			return "", ErrTampered
		}
		return Redacted, nil
	}
	if plain, ok := o.try(keyID, path, nonce, ct); ok {
		return plain, nil
	}
	return "", ErrTampered
}

// try opens ct with the current key and the additional data of keyID,
// path and each name the event type may have been sealed under.
func (o *opener) try(keyID uuid.UUID, path string, nonce, ct []byte) (string, bool) {
	plain, err := o.aead.Open(nil, nonce, ct, additionalData(keyID, o.typeName, path, o.subject))
	if err == nil {
		return string(plain), true
	}
	for _, name := range o.aliases() {
		if plain, err := o.aead.Open(nil, nonce, ct, additionalData(keyID, name, path, o.subject)); err == nil {
			return string(plain), true
		}
	}
	return "", false
}

// target returns the struct event points to and its plan; a nil plan
// means nothing to do.
func (c *Cipher) target(event any) (reflect.Value, *plan, error) {
	v := reflect.ValueOf(event)
	if v.Kind() != reflect.Pointer || v.IsNil() || v.Elem().Kind() != reflect.Struct {
		return reflect.Value{}, nil, nil
	}
	v = v.Elem()
	p, err := c.planFor(v.Type())
	if err != nil || len(p.personal) == 0 {
		return v, nil, err
	}
	return v, p, nil
}

func (c *Cipher) planFor(t reflect.Type) (*plan, error) {
	if cached, ok := c.plans.Load(t); ok {
		if err, bad := cached.(error); bad {
			return nil, err
		}
		return cached.(*plan), nil
	}
	p, err := makePlan(t)
	if err != nil {
		c.plans.Store(t, err)
		return nil, err
	}
	c.plans.Store(t, p)
	return p, nil
}

func newAEAD(key Key) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key.Secret[:])
	if err != nil {
		return nil, fmt.Errorf("shred: %w", err)
	}
	return cipher.NewGCM(block)
}

// adVersion starts the additional data, so that a later format cannot
// authenticate a v1 value or the reverse.
const adVersion = "cairn:shred:v1"

// additionalData binds a sealed value to where it belongs: format version,
// key ID, event type name, JSON path of the field and subject, each
// length-prefixed so that no two different tuples encode alike. A value
// moved to another field, event type or subject, or with its key ID
// rewritten, no longer authenticates.
func additionalData(keyID uuid.UUID, typeName, path, subject string) []byte {
	parts := [][]byte{[]byte(adVersion), keyID[:], []byte(typeName), []byte(path), []byte(subject)}
	ad := make([]byte, 0, 4*len(parts)+len(adVersion)+len(keyID)+len(typeName)+len(path)+len(subject))
	for _, part := range parts {
		ad = binary.BigEndian.AppendUint32(ad, uint32(len(part)))
		ad = append(ad, part...)
	}
	return ad
}

// seal returns the sealed form of plain: the prefix, then base64url of key
// ID, random nonce and ciphertext authenticated with ad.
func seal(aead cipher.AEAD, keyID uuid.UUID, ad []byte, plain string) (string, error) {
	buf := make([]byte, 0, len(keyID)+nonceSize+len(plain)+aead.Overhead())
	buf = append(buf, keyID[:]...)
	nonce := make([]byte, nonceSize)
	if _, err := rand.Read(nonce); err != nil {
		return "", fmt.Errorf("shred: generating a nonce: %w", err)
	}
	buf = append(buf, nonce...)
	buf = aead.Seal(buf, nonce, []byte(plain), ad)
	return sealedPrefix + base64.RawURLEncoding.EncodeToString(buf), nil
}

// parseSealed splits a sealed value into key ID, nonce and ciphertext.
func parseSealed(sealed string) (keyID uuid.UUID, nonce, ct []byte, err error) {
	raw, err := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(sealed, sealedPrefix))
	if err != nil || len(raw) < len(keyID)+nonceSize+gcmTagSize {
		return uuid.UUID{}, nil, nil, ErrTampered
	}
	copy(keyID[:], raw)
	return keyID, raw[len(keyID) : len(keyID)+nonceSize], raw[len(keyID)+nonceSize:], nil
}

// FieldError reports an event whose personal data could not be sealed or
// opened: Err is ErrNoSubject or ErrTampered; Field is the Go field path.
type FieldError struct {
	GoType reflect.Type
	Field  string
	Err    error
}

func (e *FieldError) Error() string { return fmt.Sprintf("%v: %v.%s", e.Err, e.GoType, e.Field) }

// Unwrap returns the sentinel.
func (e *FieldError) Unwrap() error { return e.Err }
