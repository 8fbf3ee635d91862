package shred_test

import (
	"context"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/cairn-es/cairn/eventstore"
	"github.com/cairn-es/cairn/eventstore/shred"
	"github.com/cairn-es/cairn/internal/pgtest"
)

type address struct {
	Street string `json:"street" cairn:"personal"`
	City   string `json:"city"`
}

type customerRegistered struct {
	CustomerID string  `json:"customer_id" cairn:"subject"`
	Name       string  `json:"name" cairn:"personal"`
	Email      string  `json:"email,omitempty" cairn:"personal"`
	Plan       string  `json:"plan"`
	Address    address `json:"address"`
}

type planChanged struct {
	CustomerID string `json:"customer_id"`
	Plan       string `json:"plan"`
}

var ada = customerRegistered{
	CustomerID: "c-1", Name: "Ada Lovelace", Email: "ada@example.com", Plan: "pro",
	Address: address{Street: "12 St James's Square", City: "London"},
}

func newRegistry(t *testing.T, kr shred.Keyring) *eventstore.Registry {
	t.Helper()
	r := eventstore.NewRegistry()
	require.NoError(t, eventstore.Register[customerRegistered](r, "CustomerRegistered", eventstore.Alias("CustomerSignedUp")))
	require.NoError(t, eventstore.Register[planChanged](r, "PlanChanged"))
	_, err := shred.Use(r, kr)
	require.NoError(t, err)
	return r
}

func asRecorded(e eventstore.Event) eventstore.RecordedEvent {
	return eventstore.RecordedEvent{ID: uuid.New(), StreamID: "customer-1", Version: 1, Type: e.Type, SchemaVersion: e.SchemaVersion, Data: e.Data}
}

func decode(t *testing.T, r *eventstore.Registry, e eventstore.Event) any {
	t.Helper()
	v, err := r.Decode(asRecorded(e))
	require.NoError(t, err)
	return v
}

func keyrings(t *testing.T) map[string]func(t *testing.T) shred.Keyring {
	pool := pgtest.Pool(t, 8)
	return map[string]func(t *testing.T) shred.Keyring{
		"memory":   func(*testing.T) shred.Keyring { return shred.NewMemoryKeyring() },
		"postgres": func(t *testing.T) shred.Keyring { return postgresKeyring(t, pool, newSchema(t, pool)) },
	}
}

func TestSealOpenForget(t *testing.T) {
	for name, newKeyring := range keyrings(t) {
		t.Run(name, func(t *testing.T) { testSealOpenForget(t, newKeyring(t)) })
	}
}

func testSealOpenForget(t *testing.T, kr shred.Keyring) {
	ctx := context.Background()
	r := newRegistry(t, kr)
	orig := ada

	e, err := r.Encode(&orig)
	require.NoError(t, err)
	require.Equal(t, ada, orig, "the caller's value is not sealed")
	for _, personal := range []string{ada.Name, ada.Email, ada.Address.Street, "Lovelace"} {
		require.NotContains(t, string(e.Data), personal)
	}
	var stored customerRegistered
	require.NoError(t, json.Unmarshal(e.Data, &stored))
	require.Equal(t, "c-1", stored.CustomerID, "the subject is stored in clear")
	require.Equal(t, "pro", stored.Plan)
	require.Equal(t, "London", stored.Address.City)
	for _, sealed := range []string{stored.Name, stored.Email, stored.Address.Street} {
		require.True(t, strings.HasPrefix(sealed, "cairn:shred:v1:"), sealed)
	}
	again, err := r.Encode(ada)
	require.NoError(t, err)
	require.NotEqual(t, string(e.Data), string(again.Data), "random nonces")

	require.Equal(t, ada, decode(t, r, e))
	old := e
	old.Type = "CustomerSignedUp"
	require.Equal(t, ada, decode(t, r, old), "an alias opens too")

	plain, err := r.Encode(planChanged{CustomerID: "c-1", Plan: "free"})
	require.NoError(t, err)
	require.JSONEq(t, `{"customer_id":"c-1","plan":"free"}`, string(plain.Data), "unmarked types are untouched")

	bob := customerRegistered{CustomerID: "c-2", Name: "Bob", Plan: "free"}
	eb, err := r.Encode(bob)
	require.NoError(t, err)

	require.NoError(t, kr.Forget(ctx, "c-1"))
	forgotten := ada
	forgotten.Name, forgotten.Email, forgotten.Address.Street = shred.Redacted, shred.Redacted, shred.Redacted
	require.Equal(t, forgotten, decode(t, r, e), "personal fields redacted, the rest intact")
	require.Equal(t, forgotten, decode(t, r, again))
	require.Equal(t, bob, decode(t, r, eb), "other subjects are not affected")

	// Recorded again, the subject gets a new key; the old events stay
	// forgotten.
	back := customerRegistered{CustomerID: "c-1", Name: "Ada King", Plan: "pro"}
	eBack, err := r.Encode(back)
	require.NoError(t, err)
	require.Equal(t, back, decode(t, r, eBack))
	require.Equal(t, forgotten, decode(t, r, e))
}

// A PostgreSQL keyring outlives its process: a new registry over a new
// handle on the schema opens what the first one sealed.
func TestSealedDataOutlivesTheProcess(t *testing.T) {
	pool := pgtest.Pool(t, 4)
	schema := newSchema(t, pool)
	e, err := newRegistry(t, postgresKeyring(t, pool, schema)).Encode(ada)
	require.NoError(t, err)
	require.Equal(t, ada, decode(t, newRegistry(t, postgresKeyring(t, pool, schema)), e))
}

func TestOpenLeavesUnsealedValues(t *testing.T) {
	r := newRegistry(t, shred.NewMemoryKeyring())
	rec := eventstore.RecordedEvent{Type: "CustomerRegistered", SchemaVersion: 1,
		Data: json.RawMessage(`{"customer_id":"c-9","name":"Recorded before marking","plan":"pro"}`)}
	v, err := r.Decode(rec)
	require.NoError(t, err)
	require.Equal(t, customerRegistered{CustomerID: "c-9", Name: "Recorded before marking", Plan: "pro"}, v)
}

func TestEmptyPersonalFieldsNeedNoKey(t *testing.T) {
	kr := shred.NewMemoryKeyring()
	r := newRegistry(t, kr)
	e, err := r.Encode(customerRegistered{CustomerID: "c-3", Plan: "pro"})
	require.NoError(t, err)
	require.JSONEq(t, `{"customer_id":"c-3","name":"","plan":"pro","address":{"street":"","city":""}}`, string(e.Data))
	_, err = kr.Get(context.Background(), "c-3")
	require.ErrorIs(t, err, shred.ErrForgotten, "no key made for nothing to seal")

	// Nor does an event without a subject, if it has nothing personal.
	_, err = r.Encode(customerRegistered{Plan: "pro"})
	require.NoError(t, err)
}

func TestSealWithoutSubject(t *testing.T) {
	r := newRegistry(t, shred.NewMemoryKeyring())
	_, err := r.Encode(customerRegistered{Name: "Nobody"})
	require.ErrorIs(t, err, eventstore.ErrFieldCipher)
	require.ErrorIs(t, err, shred.ErrNoSubject)
	var fieldErr *shred.FieldError
	require.ErrorAs(t, err, &fieldErr)
	require.Equal(t, "CustomerID", fieldErr.Field)
}

func TestOpenTampered(t *testing.T) {
	r := newRegistry(t, shred.NewMemoryKeyring())
	e, err := r.Encode(ada)
	require.NoError(t, err)
	var m map[string]any
	require.NoError(t, json.Unmarshal(e.Data, &m))
	name := m["name"].(string)

	for what, change := range map[string]func(m map[string]any){
		"flipped byte": func(m map[string]any) { m["name"] = name[:len(name)-2] + flip(name[len(name)-2]) + name[len(name)-1:] },
		"truncated":    func(m map[string]any) { m["name"] = name[:len("cairn:shred:v1:")+10] },
		"not base64":   func(m map[string]any) { m["name"] = "cairn:shred:v1:!!!" },
	} {
		t.Run(what, func(t *testing.T) {
			v, err := r.Decode(asRecorded(withData(t, e, m, change)))
			require.Nil(t, v)
			require.ErrorIs(t, err, eventstore.ErrFieldCipher)
			require.ErrorIs(t, err, shred.ErrTampered)
		})
	}

	// A value moved to another subject was not sealed under that subject's
	// key: it reads as forgotten, never in clear.
	_, err = r.Encode(customerRegistered{CustomerID: "c-2", Name: "Bob"})
	require.NoError(t, err)
	moved := decode(t, r, withData(t, e, m, func(m map[string]any) { m["customer_id"] = "c-2" }))
	require.Equal(t, shred.Redacted, moved.(customerRegistered).Name)
}

// withData returns e with its data m changed by change.
func withData(t *testing.T, e eventstore.Event, m map[string]any, change func(map[string]any)) eventstore.Event {
	t.Helper()
	changed := map[string]any{}
	for k, v := range m {
		changed[k] = v
	}
	change(changed)
	data, err := json.Marshal(changed)
	require.NoError(t, err)
	e.Data = data
	return e
}

func flip(b byte) string {
	if b == 'A' {
		return "B"
	}
	return "A"
}

// A keyring that fails (here: its pool is closed) fails Encode and Decode
// with a typed error; it is never mistaken for a forgotten subject.
func TestKeyringFailure(t *testing.T) {
	pool := pgtest.Pool(t, 2)
	e, err := newRegistry(t, postgresKeyring(t, pool, newSchema(t, pool))).Encode(ada)
	require.NoError(t, err)

	other := pgtest.Pool(t, 2)
	broken := postgresKeyring(t, other, newSchema(t, pool)) // dropped through the open pool
	other.Close()
	r := newRegistry(t, broken)
	_, err = r.Encode(ada)
	require.ErrorIs(t, err, eventstore.ErrFieldCipher)
	require.NotErrorIs(t, err, shred.ErrForgotten)
	v, err := r.Decode(asRecorded(e))
	require.Nil(t, v)
	require.ErrorIs(t, err, eventstore.ErrFieldCipher)
	require.NotErrorIs(t, err, shred.ErrForgotten)
}

func TestMarkingChecked(t *testing.T) {
	type inner struct {
		Secret string `cairn:"personal"`
	}
	type embedded struct {
		Phone string `json:"phone" cairn:"personal"`
	}
	type good struct {
		embedded
		ID string `cairn:"subject"`
	}
	type (
		personalInt struct {
			ID  string `cairn:"subject"`
			Age int    `cairn:"personal"`
		}
		twoSubjects struct {
			A, B string `cairn:"subject"`
		}
		noSubject struct {
			Name string `cairn:"personal"`
		}
		inSlice struct {
			ID   string `cairn:"subject"`
			Kids []inner
		}
		behindPointer struct {
			ID     string `cairn:"subject"`
			Spouse *inner
		}
		unexported struct {
			ID string `cairn:"subject"`
			//lint:ignore U1000 the field is the case: an unexported personal field is refused
			name string `cairn:"personal"`
		}
		unknownTag struct {
			ID   string `cairn:"subject"`
			Name string `cairn:"private"`
		}
	)
	c, err := shred.NewCipher(shred.NewMemoryKeyring())
	require.NoError(t, err)
	require.NoError(t, c.Check(reflect.TypeFor[good]()))
	require.NoError(t, c.Check(reflect.TypeFor[planChanged]()))
	for _, tc := range []struct {
		t      reflect.Type
		field  string
		reason string
	}{
		{reflect.TypeFor[personalInt](), "Age", "only strings"},
		{reflect.TypeFor[twoSubjects](), "B", "second subject"},
		{reflect.TypeFor[noSubject](), "", "no cairn:\"subject\""},
		{reflect.TypeFor[inSlice](), "Kids", "not supported"},
		{reflect.TypeFor[behindPointer](), "Spouse", "not supported"},
		{reflect.TypeFor[unexported](), "name", "not exported"},
		{reflect.TypeFor[unknownTag](), "Name", "unknown cairn tag"},
	} {
		t.Run(tc.t.Name(), func(t *testing.T) {
			err := c.Check(tc.t)
			require.ErrorIs(t, err, shred.ErrInvalidMarking)
			var markErr *shred.MarkingError
			require.ErrorAs(t, err, &markErr)
			require.Equal(t, tc.field, markErr.Field)
			require.Contains(t, markErr.Reason, tc.reason)
		})
	}

	// Use refuses a registry with a badly marked type and leaves it as it
	// was: no cipher, so Encode stores the plain value.
	r := eventstore.NewRegistry()
	require.NoError(t, eventstore.Register[good](r, "Good"))
	require.NoError(t, eventstore.Register[personalInt](r, "PersonalInt"))
	_, err = shred.Use(r, shred.NewMemoryKeyring())
	require.ErrorIs(t, err, shred.ErrInvalidMarking)
	e, err := r.Encode(good{ID: "s", embedded: embedded{Phone: "555"}})
	require.NoError(t, err)
	require.JSONEq(t, `{"phone":"555","ID":"s"}`, string(e.Data))

	// An embedded struct's fields are sealed and opened.
	r = eventstore.NewRegistry()
	require.NoError(t, eventstore.Register[good](r, "Good"))
	_, err = shred.Use(r, shred.NewMemoryKeyring())
	require.NoError(t, err)
	e, err = r.Encode(good{ID: "s", embedded: embedded{Phone: "555"}})
	require.NoError(t, err)
	require.NotContains(t, string(e.Data), "555")
	require.Equal(t, good{ID: "s", embedded: embedded{Phone: "555"}}, decode(t, r, e))
}

func TestCipherOptions(t *testing.T) {
	_, err := shred.NewCipher(nil)
	require.ErrorIs(t, err, shred.ErrInvalidOption)
	_, err = shred.NewCipher(shred.NewMemoryKeyring(), shred.KeyTimeout(0))
	require.ErrorIs(t, err, shred.ErrInvalidOption)
	_, err = shred.NewCipher(shred.NewMemoryKeyring(), shred.KeyTimeout(time.Second))
	require.NoError(t, err)
}
