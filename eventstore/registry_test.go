package eventstore_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/cairn-es/cairn/eventstore"
)

type itemAdded struct {
	SKU      string `json:"sku"`
	Quantity int    `json:"quantity"`
}

type itemRemoved struct {
	SKU string `json:"sku"`
}

// priceSet is at schema version 3: version 1 had "price" in whole units,
// version 2 renamed it "amount", version 3 moved to cents.
type priceSet struct {
	AmountCents int `json:"amount_cents"`
}

func renameField(from, to string) func(json.RawMessage) (json.RawMessage, error) {
	return func(data json.RawMessage) (json.RawMessage, error) {
		var m map[string]any
		if err := json.Unmarshal(data, &m); err != nil {
			return nil, err
		}
		m[to] = m[from]
		delete(m, from)
		return json.Marshal(m)
	}
}

func unitsToCents(data json.RawMessage) (json.RawMessage, error) {
	var v struct {
		Amount int `json:"amount"`
	}
	if err := json.Unmarshal(data, &v); err != nil {
		return nil, err
	}
	return json.Marshal(map[string]int{"amount_cents": v.Amount * 100})
}

func newTestRegistry(t *testing.T) *eventstore.Registry {
	t.Helper()
	r := eventstore.NewRegistry()
	require.NoError(t, eventstore.Register[itemAdded](r, "ItemAdded"))
	require.NoError(t, eventstore.Register[itemRemoved](r, "ItemRemoved"))
	require.NoError(t, eventstore.Register[priceSet](r, "PriceSet",
		eventstore.SchemaVersion(3),
		eventstore.Upcast(1, renameField("price", "amount")),
		eventstore.Upcast(2, unitsToCents),
	))
	return r
}

func recorded(e eventstore.Event) eventstore.RecordedEvent {
	return eventstore.RecordedEvent{
		ID: uuid.New(), StreamID: "cart-1", Version: 1,
		Type: e.Type, SchemaVersion: e.SchemaVersion, Data: e.Data,
	}
}

func TestRegistryEncodeDecodeRoundTrip(t *testing.T) {
	r := newTestRegistry(t)

	for _, v := range []any{itemAdded{SKU: "A-1", Quantity: 2}, &itemAdded{SKU: "A-1", Quantity: 2}} {
		e, err := r.Encode(v)
		require.NoError(t, err)
		require.Equal(t, "ItemAdded", e.Type)
		require.Equal(t, 1, e.SchemaVersion)
		require.JSONEq(t, `{"sku":"A-1","quantity":2}`, string(e.Data))
		require.Equal(t, uuid.Nil, e.ID, "the store assigns IDs")

		got, err := r.Decode(recorded(e))
		require.NoError(t, err)
		require.IsType(t, itemAdded{}, got, "Decode returns the value, not a pointer")
		require.Equal(t, itemAdded{SKU: "A-1", Quantity: 2}, got)
	}

	e, err := r.Encode(priceSet{AmountCents: 250})
	require.NoError(t, err)
	require.Equal(t, "PriceSet", e.Type)
	require.Equal(t, 3, e.SchemaVersion, "Encode writes the current schema version")
	got, err := r.Decode(recorded(e))
	require.NoError(t, err)
	require.Equal(t, priceSet{AmountCents: 250}, got)
}

func TestRegistryUpcasts(t *testing.T) {
	r := newTestRegistry(t)
	for _, tc := range []struct {
		version int
		data    string
	}{
		{1, `{"price": 7}`},
		{2, `{"amount": 7}`},
		{3, `{"amount_cents": 700}`},
	} {
		t.Run(fmt.Sprint("from version ", tc.version), func(t *testing.T) {
			got, err := r.Decode(eventstore.RecordedEvent{Type: "PriceSet", SchemaVersion: tc.version, Data: json.RawMessage(tc.data)})
			require.NoError(t, err)
			require.Equal(t, priceSet{AmountCents: 700}, got)
		})
	}
}

func TestRegistryDuplicateRegistration(t *testing.T) {
	r := newTestRegistry(t)

	type other struct{}
	err := eventstore.Register[other](r, "ItemAdded")
	require.ErrorIs(t, err, eventstore.ErrDuplicateRegistration)
	var regErr *eventstore.RegistrationError
	require.ErrorAs(t, err, &regErr)
	require.Equal(t, "ItemAdded", regErr.Name)
	require.Equal(t, reflect.TypeFor[other](), regErr.GoType)
	require.Contains(t, err.Error(), "itemAdded")

	err = eventstore.Register[itemAdded](r, "ItemAddedAgain")
	require.ErrorIs(t, err, eventstore.ErrDuplicateRegistration)
	require.ErrorAs(t, err, &regErr)
	require.Contains(t, regErr.Reason, `"ItemAdded"`)

	// The failed registrations left nothing behind.
	_, ok := r.Lookup("ItemAddedAgain")
	require.False(t, ok)
	_, ok = eventstore.TypeNameOf[other](r)
	require.False(t, ok)

	require.PanicsWithError(t, err.Error(), func() { eventstore.MustRegister[itemAdded](r, "ItemAddedAgain") })
	require.NotPanics(t, func() { eventstore.MustRegister[other](r, "Other") })
}

func TestRegistryInvalidRegistration(t *testing.T) {
	noop := func(d json.RawMessage) (json.RawMessage, error) { return d, nil }
	for name, register := range map[string]func(*eventstore.Registry) error{
		"empty name":     func(r *eventstore.Registry) error { return eventstore.Register[itemAdded](r, "") },
		"long name":      func(r *eventstore.Registry) error { return eventstore.Register[itemAdded](r, strings.Repeat("x", 201)) },
		"pointer type":   func(r *eventstore.Registry) error { return eventstore.Register[*itemAdded](r, "X") },
		"interface type": func(r *eventstore.Registry) error { return eventstore.Register[any](r, "X") },
		"schema version 0": func(r *eventstore.Registry) error {
			return eventstore.Register[itemAdded](r, "X", eventstore.SchemaVersion(0))
		},
		"upcaster from 0": func(r *eventstore.Registry) error {
			return eventstore.Register[itemAdded](r, "X", eventstore.SchemaVersion(2), eventstore.Upcast(0, noop))
		},
		"upcaster from current": func(r *eventstore.Registry) error {
			return eventstore.Register[itemAdded](r, "X", eventstore.SchemaVersion(2), eventstore.Upcast(2, noop))
		},
		"nil upcaster": func(r *eventstore.Registry) error {
			return eventstore.Register[itemAdded](r, "X", eventstore.SchemaVersion(2), eventstore.Upcast(1, nil))
		},
		"two upcasters": func(r *eventstore.Registry) error {
			return eventstore.Register[itemAdded](r, "X", eventstore.SchemaVersion(2), eventstore.Upcast(1, noop), eventstore.Upcast(1, noop))
		},
	} {
		t.Run(name, func(t *testing.T) {
			r := eventstore.NewRegistry()
			err := register(r)
			require.ErrorIs(t, err, eventstore.ErrInvalidRegistration)
			var regErr *eventstore.RegistrationError
			require.ErrorAs(t, err, &regErr)
			require.NotEmpty(t, regErr.Reason)
			require.Empty(t, r.Names())
		})
	}
}

func TestRegistryEncodeUnregistered(t *testing.T) {
	r := newTestRegistry(t)
	type unregistered struct{ X int }
	for _, v := range []any{unregistered{}, &unregistered{}, nil, 42} {
		_, err := r.Encode(v)
		require.ErrorIs(t, err, eventstore.ErrUnknownEventType, "%T", v)
		var typeErr *eventstore.UnknownEventTypeError
		require.ErrorAs(t, err, &typeErr)
		require.Empty(t, typeErr.Name)
	}
	_, err := r.Encode((*itemAdded)(nil))
	require.Error(t, err)
}

func TestRegistryDecodeUnknownType(t *testing.T) {
	r := newTestRegistry(t)
	v, err := r.Decode(eventstore.RecordedEvent{StreamID: "cart-1", Version: 4, Type: "Nope", SchemaVersion: 1, Data: json.RawMessage(`{}`)})
	require.Nil(t, v)
	require.ErrorIs(t, err, eventstore.ErrUnknownEventType)
	var typeErr *eventstore.UnknownEventTypeError
	require.ErrorAs(t, err, &typeErr)
	require.Equal(t, "Nope", typeErr.Name)
	require.Equal(t, "cart-1", typeErr.StreamID)
	require.EqualValues(t, 4, typeErr.Version)
}

func TestRegistryDecodeUnknownSchemaVersion(t *testing.T) {
	r := newTestRegistry(t)
	// "Gappy" is at version 3 with an upcaster from 2 only: version 2 data
	// reads, version 1 data does not.
	type gappy struct {
		SKU string `json:"sku"`
	}
	require.NoError(t, eventstore.Register[gappy](r, "Gappy", eventstore.SchemaVersion(3),
		eventstore.Upcast(2, func(d json.RawMessage) (json.RawMessage, error) { return d, nil })))
	got, err := r.Decode(eventstore.RecordedEvent{Type: "Gappy", SchemaVersion: 2, Data: json.RawMessage(`{"sku":"s"}`)})
	require.NoError(t, err)
	require.Equal(t, gappy{SKU: "s"}, got)

	for _, tc := range []struct {
		name    string
		typ     string
		version int
		current int
		reason  string
	}{
		{"newer than current", "ItemAdded", 2, 1, "newer"},
		{"far newer", "PriceSet", 9, 3, "newer"},
		{"zero", "ItemAdded", 0, 1, "start at 1"},
		{"negative", "PriceSet", -1, 3, "start at 1"},
		{"gap in upcaster chain", "Gappy", 1, 3, "no upcaster from version 1 to 2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, err := r.Decode(eventstore.RecordedEvent{StreamID: "s-1", Version: 7, Type: tc.typ, SchemaVersion: tc.version, Data: json.RawMessage(`{}`)})
			require.Nil(t, v)
			require.ErrorIs(t, err, eventstore.ErrUnknownSchemaVersion)
			require.NotErrorIs(t, err, eventstore.ErrUndecodableEvent)
			var verErr *eventstore.UnknownSchemaVersionError
			require.ErrorAs(t, err, &verErr)
			require.Equal(t, tc.typ, verErr.Type)
			require.Equal(t, tc.version, verErr.SchemaVersion)
			require.Equal(t, tc.current, verErr.CurrentVersion)
			require.Equal(t, "s-1", verErr.StreamID)
			require.EqualValues(t, 7, verErr.Version)
			require.Contains(t, verErr.Reason, tc.reason)
		})
	}
}

func TestRegistryDecodeUndecodable(t *testing.T) {
	r := newTestRegistry(t)
	upcastFailure := errors.New("cannot upcast")
	type failing struct{}
	require.NoError(t, eventstore.Register[failing](r, "Failing", eventstore.SchemaVersion(2),
		eventstore.Upcast(1, func(json.RawMessage) (json.RawMessage, error) { return nil, upcastFailure })))
	type nuller struct{}
	require.NoError(t, eventstore.Register[nuller](r, "Nuller", eventstore.SchemaVersion(2),
		eventstore.Upcast(1, func(json.RawMessage) (json.RawMessage, error) { return json.RawMessage(" null "), nil })))

	var syntaxErr *json.SyntaxError
	var typeErr *json.UnmarshalTypeError
	for _, tc := range []struct {
		name    string
		typ     string
		version int
		data    string
		cause   any // pointer to an error type for errors.As, or an error for errors.Is
	}{
		{"wrong field type", "ItemAdded", 1, `{"sku":"a","quantity":"many"}`, &typeErr},
		{"not JSON", "ItemAdded", 1, `{"sku":`, &syntaxErr},
		{"wrong JSON kind", "ItemAdded", 1, `[1,2]`, &typeErr},
		{"null", "ItemAdded", 1, `null`, nil},
		{"empty", "ItemAdded", 1, ``, nil},
		{"upcaster error", "Failing", 1, `{}`, upcastFailure},
		{"upcaster input not JSON", "PriceSet", 1, `nope`, &syntaxErr},
		{"null before upcasting", "PriceSet", 2, `null`, nil},
		{"upcast to null", "Nuller", 1, `{}`, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := uuid.New()
			v, err := r.Decode(eventstore.RecordedEvent{ID: id, StreamID: "s-1", Version: 3, Type: tc.typ, SchemaVersion: tc.version, Data: json.RawMessage(tc.data)})
			require.Nil(t, v, "never a silent zero value")
			require.ErrorIs(t, err, eventstore.ErrUndecodableEvent)
			var decErr *eventstore.DecodeError
			require.ErrorAs(t, err, &decErr)
			require.Equal(t, tc.typ, decErr.Type)
			require.Equal(t, tc.version, decErr.SchemaVersion)
			require.Equal(t, "s-1", decErr.StreamID)
			require.EqualValues(t, 3, decErr.Version)
			require.Equal(t, id.String(), decErr.EventID)
			require.NotEmpty(t, decErr.Step)
			require.Error(t, decErr.Err)
			switch c := tc.cause.(type) {
			case error:
				require.ErrorIs(t, err, c)
			case nil:
			default:
				require.ErrorAs(t, err, c)
			}
		})
	}
}

func TestRegistryLookups(t *testing.T) {
	r := newTestRegistry(t)
	require.Equal(t, []string{"ItemAdded", "ItemRemoved", "PriceSet"}, r.Names())

	info, ok := r.Lookup("PriceSet")
	require.True(t, ok)
	require.Equal(t, eventstore.TypeInfo{Name: "PriceSet", GoType: reflect.TypeFor[priceSet](), SchemaVersion: 3}, info)
	_, ok = r.Lookup("Nope")
	require.False(t, ok)

	for _, v := range []any{itemRemoved{}, &itemRemoved{}} {
		name, ok := r.TypeName(v)
		require.True(t, ok)
		require.Equal(t, "ItemRemoved", name)
	}
	_, ok = r.TypeName(42)
	require.False(t, ok)
	_, ok = r.TypeName(nil)
	require.False(t, ok)

	name, ok := eventstore.TypeNameOf[itemAdded](r)
	require.True(t, ok)
	require.Equal(t, "ItemAdded", name)
	_, ok = eventstore.TypeNameOf[*itemAdded](r)
	require.False(t, ok)
}

func TestRegistryConcurrentUse(t *testing.T) {
	r := newTestRegistry(t)
	done := make(chan struct{})
	for i := range 8 {
		go func() {
			defer func() { done <- struct{}{} }()
			e, err := r.Encode(itemAdded{SKU: fmt.Sprint(i), Quantity: i})
			if err != nil {
				t.Error(err)
				return
			}
			if _, err := r.Decode(recorded(e)); err != nil {
				t.Error(err)
			}
			_ = r.Names()
		}()
	}
	type late struct{}
	require.NoError(t, eventstore.Register[late](r, "Late"))
	for range 8 {
		<-done
	}
}

func ExampleRegistry() {
	type OrderPlaced struct {
		OrderID string `json:"order_id"`
		// Version 1 stored the total in whole euros as "total".
		TotalCents int `json:"total_cents"`
	}

	reg := eventstore.NewRegistry()
	eventstore.MustRegister[OrderPlaced](reg, "OrderPlaced",
		eventstore.SchemaVersion(2),
		eventstore.Upcast(1, func(data json.RawMessage) (json.RawMessage, error) {
			var v1 struct {
				OrderID string `json:"order_id"`
				Total   int    `json:"total"`
			}
			if err := json.Unmarshal(data, &v1); err != nil {
				return nil, err
			}
			return json.Marshal(map[string]any{"order_id": v1.OrderID, "total_cents": v1.Total * 100})
		}),
	)

	e, _ := reg.Encode(OrderPlaced{OrderID: "o-1", TotalCents: 1250})
	fmt.Println(e.Type, e.SchemaVersion, string(e.Data))

	// An event written by the first version of the code.
	old := eventstore.RecordedEvent{Type: "OrderPlaced", SchemaVersion: 1, Data: json.RawMessage(`{"order_id":"o-0","total":3}`)}
	v, _ := reg.Decode(old)
	fmt.Printf("%+v\n", v)

	// One written by a newer deployment than this one.
	future := eventstore.RecordedEvent{Type: "OrderPlaced", SchemaVersion: 3, Data: json.RawMessage(`{}`)}
	_, err := reg.Decode(future)
	var verErr *eventstore.UnknownSchemaVersionError
	fmt.Println(errors.Is(err, eventstore.ErrUnknownSchemaVersion), errors.As(err, &verErr) && verErr.SchemaVersion == 3)

	// Output:
	// OrderPlaced 2 {"order_id":"o-1","total_cents":1250}
	// {OrderID:o-0 TotalCents:300}
	// true true
}

// cartCheckedOut was stored as "CheckoutCompleted" (and before that
// "OrderSubmitted") at schema version 1 with "total" in whole units; version
// 2 renamed the type and moved to cents.
type cartCheckedOut struct {
	CartID     string `json:"cart_id"`
	TotalCents int    `json:"total_cents"`
}

func registerRenamed(t *testing.T, r *eventstore.Registry) {
	t.Helper()
	require.NoError(t, eventstore.Register[cartCheckedOut](r, "CartCheckedOut",
		eventstore.SchemaVersion(2),
		eventstore.Upcast(1, func(data json.RawMessage) (json.RawMessage, error) {
			var v1 struct {
				CartID string `json:"cart_id"`
				Total  int    `json:"total"`
			}
			if err := json.Unmarshal(data, &v1); err != nil {
				return nil, err
			}
			return json.Marshal(cartCheckedOut{CartID: v1.CartID, TotalCents: v1.Total * 100})
		}),
		eventstore.Alias("CheckoutCompleted"),
		eventstore.Alias("OrderSubmitted"),
	))
}

func TestRegistryAliasDecodesOldNames(t *testing.T) {
	r := newTestRegistry(t)
	registerRenamed(t, r)

	for _, name := range []string{"CheckoutCompleted", "OrderSubmitted"} {
		t.Run(name, func(t *testing.T) {
			// An old-name event at version 1 runs the new type's upcasters.
			got, err := r.Decode(eventstore.RecordedEvent{ID: uuid.New(), StreamID: "cart-1", Version: 3,
				Type: name, SchemaVersion: 1, Data: json.RawMessage(`{"cart_id":"c-1","total":4}`)})
			require.NoError(t, err)
			require.Equal(t, cartCheckedOut{CartID: "c-1", TotalCents: 400}, got)

			got, err = r.Decode(eventstore.RecordedEvent{Type: name, SchemaVersion: 2, Data: json.RawMessage(`{"cart_id":"c-1","total_cents":5}`)})
			require.NoError(t, err)
			require.Equal(t, cartCheckedOut{CartID: "c-1", TotalCents: 5}, got)

			// Errors name the stored type.
			_, err = r.Decode(eventstore.RecordedEvent{Type: name, SchemaVersion: 3, Data: json.RawMessage(`{}`)})
			var verErr *eventstore.UnknownSchemaVersionError
			require.ErrorAs(t, err, &verErr)
			require.Equal(t, name, verErr.Type)
			require.Equal(t, 2, verErr.CurrentVersion)
		})
	}

	// The type is still written under its current name.
	e, err := r.Encode(cartCheckedOut{CartID: "c-2", TotalCents: 1})
	require.NoError(t, err)
	require.Equal(t, "CartCheckedOut", e.Type)
	require.Equal(t, 2, e.SchemaVersion)
	name, ok := eventstore.TypeNameOf[cartCheckedOut](r)
	require.True(t, ok)
	require.Equal(t, "CartCheckedOut", name)
}

func TestRegistryAliasLookups(t *testing.T) {
	r := newTestRegistry(t)
	registerRenamed(t, r)

	want := eventstore.TypeInfo{Name: "CartCheckedOut", GoType: reflect.TypeFor[cartCheckedOut](), SchemaVersion: 2,
		Aliases: []string{"CheckoutCompleted", "OrderSubmitted"}}
	for _, name := range []string{"CartCheckedOut", "CheckoutCompleted", "OrderSubmitted"} {
		info, ok := r.Lookup(name)
		require.True(t, ok, name)
		require.Equal(t, want, info, "an alias looks up the type under its current name")
	}
	info, _ := r.Lookup("OrderSubmitted")
	info.Aliases[0] = "changed"
	info, _ = r.Lookup("OrderSubmitted")
	require.Equal(t, want.Aliases, info.Aliases, "Lookup hands out a copy")

	require.Equal(t, []string{"CartCheckedOut", "ItemAdded", "ItemRemoved", "PriceSet"}, r.Names(), "one current name a type")
	require.Equal(t, []string{"CartCheckedOut", "CheckoutCompleted", "ItemAdded", "ItemRemoved", "OrderSubmitted", "PriceSet"},
		r.StoredNames(), "every name Decode reads")
}

func TestRegistryAliasRefused(t *testing.T) {
	type renamed struct{}
	for _, tc := range []struct {
		name     string
		register func(*eventstore.Registry) error
		sentinel error
		reason   string
	}{
		{"alias of a registered name", func(r *eventstore.Registry) error {
			return eventstore.Register[renamed](r, "Renamed", eventstore.Alias("ItemAdded"))
		}, eventstore.ErrDuplicateRegistration, `alias "ItemAdded" already registered`},
		{"alias of another type's alias", func(r *eventstore.Registry) error {
			return eventstore.Register[renamed](r, "Renamed", eventstore.Alias("Fresh"), eventstore.Alias("OrderSubmitted"))
		}, eventstore.ErrDuplicateRegistration, `already an alias of "CartCheckedOut"`},
		{"name that is another type's alias", func(r *eventstore.Registry) error {
			return eventstore.Register[renamed](r, "CheckoutCompleted", eventstore.Alias("Fresh"))
		}, eventstore.ErrDuplicateRegistration, `already an alias of "CartCheckedOut"`},
		{"alias of its own name", func(r *eventstore.Registry) error {
			return eventstore.Register[renamed](r, "Renamed", eventstore.Alias("Fresh"), eventstore.Alias("Renamed"))
		}, eventstore.ErrInvalidRegistration, "own name"},
		{"alias given twice", func(r *eventstore.Registry) error {
			return eventstore.Register[renamed](r, "Renamed", eventstore.Alias("Fresh"), eventstore.Alias("Fresh"))
		}, eventstore.ErrInvalidRegistration, "twice"},
		{"empty alias", func(r *eventstore.Registry) error {
			return eventstore.Register[renamed](r, "Renamed", eventstore.Alias(""))
		}, eventstore.ErrInvalidRegistration, "empty"},
		{"long alias", func(r *eventstore.Registry) error {
			return eventstore.Register[renamed](r, "Renamed", eventstore.Alias(strings.Repeat("x", 201)))
		}, eventstore.ErrInvalidRegistration, "at most"},
		{"same Go type under a second name", func(r *eventstore.Registry) error {
			return eventstore.Register[cartCheckedOut](r, "Fresh")
		}, eventstore.ErrDuplicateRegistration, "Go type already registered"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newTestRegistry(t)
			registerRenamed(t, r)
			before := r.StoredNames()

			err := tc.register(r)
			require.ErrorIs(t, err, tc.sentinel)
			var regErr *eventstore.RegistrationError
			require.ErrorAs(t, err, &regErr)
			require.Contains(t, regErr.Reason, tc.reason)

			require.Equal(t, before, r.StoredNames(), "nothing registered, no alias either")
			_, ok := eventstore.TypeNameOf[renamed](r)
			require.False(t, ok)
			_, ok = r.Lookup("Fresh")
			require.False(t, ok)
		})
	}
}

// upperCipher seals every string field named Secret by upper-casing it and
// opens it by lower-casing: enough to see where the registry calls a
// FieldCipher and on what.
type upperCipher struct{ failSeal, failOpen error }

type secretNoted struct {
	Note   string `json:"note"`
	Secret string `json:"secret"`
}

func (c upperCipher) Seal(_ context.Context, event any) error {
	if c.failSeal != nil {
		return c.failSeal
	}
	if s, ok := event.(*secretNoted); ok {
		s.Secret = strings.ToUpper(s.Secret)
	}
	return nil
}

func (c upperCipher) Open(_ context.Context, event any) error {
	if c.failOpen != nil {
		return c.failOpen
	}
	if s, ok := event.(*secretNoted); ok {
		s.Secret = strings.ToLower(s.Secret)
	}
	return nil
}

func TestRegistryFieldCipher(t *testing.T) {
	r := newTestRegistry(t)
	require.NoError(t, eventstore.Register[secretNoted](r, "SecretNoted", eventstore.Alias("OldSecretNoted")))
	r.UseFieldCipher(upperCipher{})

	orig := secretNoted{Note: "n", Secret: "abc"}
	for _, v := range []any{orig, &orig} {
		e, err := r.EncodeContext(context.Background(), v)
		require.NoError(t, err)
		require.JSONEq(t, `{"note":"n","secret":"ABC"}`, string(e.Data))
		require.Equal(t, secretNoted{Note: "n", Secret: "abc"}, orig, "Seal works on a copy")

		for _, typ := range []string{"SecretNoted", "OldSecretNoted"} {
			rec := recorded(e)
			rec.Type = typ
			got, err := r.Decode(rec)
			require.NoError(t, err)
			require.Equal(t, orig, got, "Open runs after unmarshal, for aliases too")
		}
	}

	boom := errors.New("keyring down")
	r.UseFieldCipher(upperCipher{failSeal: boom})
	_, err := r.Encode(orig)
	require.ErrorIs(t, err, eventstore.ErrFieldCipher)
	require.ErrorIs(t, err, boom)
	var cipherErr *eventstore.FieldCipherError
	require.ErrorAs(t, err, &cipherErr)
	require.Equal(t, "seal", cipherErr.Op)
	require.Equal(t, "SecretNoted", cipherErr.Type)

	r.UseFieldCipher(upperCipher{failOpen: boom})
	rec := eventstore.RecordedEvent{ID: uuid.New(), StreamID: "s-1", Version: 2, Type: "SecretNoted", SchemaVersion: 1, Data: json.RawMessage(`{"secret":"X"}`)}
	v, err := r.DecodeContext(context.Background(), rec)
	require.Nil(t, v)
	require.ErrorIs(t, err, eventstore.ErrFieldCipher)
	require.NotErrorIs(t, err, eventstore.ErrUndecodableEvent)
	require.ErrorAs(t, err, &cipherErr)
	require.Equal(t, "open", cipherErr.Op)
	require.Equal(t, "s-1", cipherErr.StreamID)
	require.EqualValues(t, 2, cipherErr.Version)
	require.Equal(t, rec.ID.String(), cipherErr.EventID)

	r.UseFieldCipher(nil)
	e, err := r.Encode(orig)
	require.NoError(t, err)
	require.JSONEq(t, `{"note":"n","secret":"abc"}`, string(e.Data))
}

func ExampleAlias() {
	// Stored as "BasketCheckedOut" until the type was renamed.
	type CartCheckedOut struct {
		CartID string `json:"cart_id"`
	}
	reg := eventstore.NewRegistry()
	eventstore.MustRegister[CartCheckedOut](reg, "CartCheckedOut", eventstore.Alias("BasketCheckedOut"))

	v, _ := reg.Decode(eventstore.RecordedEvent{Type: "BasketCheckedOut", SchemaVersion: 1, Data: json.RawMessage(`{"cart_id":"c-1"}`)})
	fmt.Printf("%+v\n", v)
	e, _ := reg.Encode(v)
	fmt.Println(e.Type)
	info, _ := reg.Lookup("BasketCheckedOut")
	fmt.Println(info.Name, info.Aliases, reg.Names(), reg.StoredNames())

	// Output:
	// {CartID:c-1}
	// CartCheckedOut
	// CartCheckedOut [BasketCheckedOut] [CartCheckedOut] [BasketCheckedOut CartCheckedOut]
}
