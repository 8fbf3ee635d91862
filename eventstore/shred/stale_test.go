package shred_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/cairn-es/cairn/eventstore"
	"github.com/cairn-es/cairn/eventstore/shred"
	"github.com/cairn-es/cairn/internal/pgtest"
)

// Two processes share one table: B caches the subject's first key; A
// forgets the subject and records it again under a new key. B reads the
// new events in clear (not redacted), and the old ones as forgotten.
func TestForgottenAndRecordedAgainElsewhere(t *testing.T) {
	ctx := context.Background()
	poolA, poolB := pgtest.Pool(t, 4), pgtest.Pool(t, 4)
	schema := newSchema(t, poolA)
	krA, krB := postgresKeyring(t, poolA, schema), postgresKeyring(t, poolB, schema)
	rA, rB := newRegistry(t, krA), newRegistry(t, krB)

	first, err := rA.Encode(ada)
	require.NoError(t, err)
	require.Equal(t, ada, decode(t, rB, first), "B caches the first key")

	require.NoError(t, krA.Forget(ctx, "c-1"))
	back := customerRegistered{CustomerID: "c-1", Name: "Ada King", Plan: "pro"}
	second, err := rA.Encode(back)
	require.NoError(t, err)

	require.Equal(t, back, decode(t, rB, second), "live data is not redacted")
	forgotten := ada
	forgotten.Name, forgotten.Email, forgotten.Address.Street = shred.Redacted, shred.Redacted, shred.Redacted
	require.Equal(t, forgotten, decode(t, rB, first), "B no longer opens the forgotten key's data")
	k, err := krB.GetOrCreate(ctx, "c-1")
	require.NoError(t, err)
	kA, err := krA.Get(ctx, "c-1")
	require.NoError(t, err)
	require.Equal(t, kA, k, "B seals under the new key from now on")

	// Both keys are known now: B answers without the table (its pool is
	// closed), for the new events and the forgotten ones alike.
	poolB.Close()
	require.Equal(t, back, decode(t, rB, second))
	require.Equal(t, forgotten, decode(t, rB, first))
}

// A key forgotten in another process stops working in this one within
// CacheTTL: it no longer opens what it sealed, and GetOrCreate no longer
// seals under it.
func TestCacheTTLBoundsAForgetElsewhere(t *testing.T) {
	ctx := context.Background()
	pool := pgtest.Pool(t, 4)
	schema := newSchema(t, pool)
	const ttl = 200 * time.Millisecond
	krA, krB := postgresKeyring(t, pool, schema), postgresKeyring(t, pool, schema, shred.CacheTTL(ttl))
	rB := newRegistry(t, krB)
	e, err := rB.Encode(ada)
	require.NoError(t, err)
	k1, err := krB.Get(ctx, "c-1")
	require.NoError(t, err)

	require.NoError(t, krA.Forget(ctx, "c-1"))
	redacted := func() bool { return decode(t, rB, e).(customerRegistered).Name == shred.Redacted }
	require.Eventually(t, redacted, 3*ttl, ttl/10, "redacted within the TTL")

	k2, err := krB.GetOrCreate(ctx, "c-1")
	require.NoError(t, err)
	require.NotEqual(t, k1.ID, k2.ID, "a new key, not the forgotten one")
	again, err := krA.Get(ctx, "c-1")
	require.NoError(t, err)
	require.Equal(t, k2, again)

	_, err = shred.NewPostgresKeyring(ctx, pool, schema, shred.CacheTTL(0))
	require.ErrorIs(t, err, shred.ErrInvalidOption)
	_, err = shred.NewPostgresKeyring(ctx, pool, schema, shred.CacheTTL(-time.Second))
	require.ErrorIs(t, err, shred.ErrInvalidOption)
}

type emailChanged struct {
	CustomerID string `json:"customer_id" cairn:"subject"`
	Email      string `json:"email" cairn:"personal"`
}

// A sealed value is bound to its event type, field and key ID: moved to
// another field or event of the same subject, or with its key ID
// rewritten, it fails as tampered with; it is never read in clear nor
// silently redacted.
func TestSealedValueBoundToItsPlace(t *testing.T) {
	r := newRegistry(t, shred.NewMemoryKeyring())
	require.NoError(t, eventstore.Register[emailChanged](r, "EmailChanged"))
	e, err := r.Encode(ada)
	require.NoError(t, err)
	var m map[string]any
	require.NoError(t, json.Unmarshal(e.Data, &m))
	email := m["email"].(string)
	street := m["address"].(map[string]any)["street"].(string)

	tampered := func(t *testing.T, e eventstore.Event) {
		t.Helper()
		v, err := r.Decode(asRecorded(e))
		require.Nil(t, v)
		require.ErrorIs(t, err, eventstore.ErrFieldCipher)
		require.ErrorIs(t, err, shred.ErrTampered)
	}
	t.Run("another field", func(t *testing.T) {
		tampered(t, withData(t, e, m, func(m map[string]any) { m["name"] = email }))
		tampered(t, withData(t, e, m, func(m map[string]any) { m["name"] = street }))
	})
	t.Run("another event type", func(t *testing.T) {
		moved := eventstore.Event{Type: "EmailChanged", SchemaVersion: 1,
			Data: json.RawMessage(`{"customer_id":"c-1","email":"` + email + `"}`)}
		tampered(t, moved)
	})
	t.Run("key ID rewritten", func(t *testing.T) {
		raw, err := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(email, "cairn:shred:v1:"))
		require.NoError(t, err)
		other := uuid.New()
		copy(raw, other[:])
		edited := "cairn:shred:v1:" + base64.RawURLEncoding.EncodeToString(raw)
		tampered(t, withData(t, e, m, func(m map[string]any) { m["email"] = edited }))
	})
	require.Equal(t, ada, decode(t, r, e), "in its place it opens")
}

// A type renamed with an alias still opens what was sealed under its old
// name.
func TestSealedUnderAnOldName(t *testing.T) {
	kr := shred.NewMemoryKeyring()
	before := eventstore.NewRegistry()
	require.NoError(t, eventstore.Register[customerRegistered](before, "CustomerSignedUp"))
	_, err := shred.Use(before, kr)
	require.NoError(t, err)
	e, err := before.Encode(ada)
	require.NoError(t, err)
	require.Equal(t, ada, decode(t, newRegistry(t, kr), e))
}

// An event copied from a forgotten one carries Redacted, not personal
// data: encoding it creates no key (which would only protect the marker).
func TestRedactedIsNotSealed(t *testing.T) {
	ctx := context.Background()
	pool := pgtest.Pool(t, 4)
	schema := newSchema(t, pool)
	kr := postgresKeyring(t, pool, schema)
	r := newRegistry(t, kr)
	e, err := r.Encode(ada)
	require.NoError(t, err)
	require.NoError(t, kr.Forget(ctx, "c-1"))
	copied := decode(t, r, e).(customerRegistered)
	require.Equal(t, shred.Redacted, copied.Name)

	again, err := r.Encode(copied)
	require.NoError(t, err)
	require.Zero(t, countKeys(t, pool, schema), "no key for the redacted marker")
	require.Equal(t, copied, decode(t, r, again))
}

// A cipher made without Use knows no event type names, to which sealed
// values are bound: it refuses to seal rather than seal unbound.
func TestCipherWithoutRegistry(t *testing.T) {
	c, err := shred.NewCipher(shred.NewMemoryKeyring())
	require.NoError(t, err)
	v := ada
	require.ErrorIs(t, c.Seal(context.Background(), &v), shred.ErrInvalidMarking)
	require.Equal(t, ada, v)
}

// The binding uses the stored JSON path and the registered name, not Go
// names: renaming Go fields and types that keep their json tags still
// opens what was sealed before.
func TestGoRenamesKeepOpening(t *testing.T) {
	type renamed struct {
		Customer string `json:"customer_id" cairn:"subject"`
		FullName string `json:"name" cairn:"personal"`
		Mail     string `json:"email,omitempty" cairn:"personal"`
		Tier     string `json:"plan"`
		Home     struct {
			Road string `json:"street" cairn:"personal"`
			Town string `json:"city"`
		} `json:"address"`
	}
	kr := shred.NewMemoryKeyring()
	e, err := newRegistry(t, kr).Encode(ada)
	require.NoError(t, err)
	r := eventstore.NewRegistry()
	require.NoError(t, eventstore.Register[renamed](r, "CustomerRegistered"))
	_, err = shred.Use(r, kr)
	require.NoError(t, err)
	got := decode(t, r, e).(renamed)
	require.Equal(t, []string{ada.Name, ada.Email, ada.Address.Street}, []string{got.FullName, got.Mail, got.Home.Road})
}
