package shred_test

import (
	"context"
	"fmt"

	"github.com/cairn-es/cairn/eventstore"
	"github.com/cairn-es/cairn/eventstore/shred"
)

func ExampleUse() {
	type CustomerRegistered struct {
		CustomerID string `json:"customer_id" cairn:"subject"`
		Email      string `json:"email" cairn:"personal"`
		Plan       string `json:"plan"`
	}
	reg := eventstore.NewRegistry()
	eventstore.MustRegister[CustomerRegistered](reg, "CustomerRegistered")
	keys := shred.NewMemoryKeyring() // shred.NewPostgresKeyring in production
	if _, err := shred.Use(reg, keys); err != nil {
		panic(err)
	}

	e, _ := reg.Encode(CustomerRegistered{CustomerID: "c-1", Email: "ada@example.com", Plan: "pro"})
	rec := eventstore.RecordedEvent{Type: e.Type, SchemaVersion: e.SchemaVersion, Data: e.Data}
	v, _ := reg.Decode(rec)
	fmt.Printf("%+v\n", v)

	_ = keys.Forget(context.Background(), "c-1")
	v, _ = reg.Decode(rec)
	fmt.Printf("%+v\n", v)

	// Output:
	// {CustomerID:c-1 Email:ada@example.com Plan:pro}
	// {CustomerID:c-1 Email:[forgotten] Plan:pro}
}
