package fulfilment

import (
	"time"

	"github.com/cairn-es/cairn/app"
	"github.com/cairn-es/cairn/eventstore"
)

// DefaultPaymentTimeout is how long the saga waits for the payment.
const DefaultPaymentTimeout = 30 * time.Second

// Module registers the fulfilment saga. It has no events of its own: it
// reacts to the other contexts' events and sends their commands, so it is
// registered after them.
type Module struct {
	// Prefix is prepended to the saga's name, which names its projection
	// schema: tests and services sharing a database set it (see
	// ordering.Module.Prefix).
	Prefix string
	// PaymentTimeout bounds the wait for the payment's answer (default
	// DefaultPaymentTimeout); then the order is cancelled, and a payment
	// that succeeds later is refunded.
	PaymentTimeout time.Duration
}

var _ app.ProcessModule = Module{}

// Name implements app.Module.
func (Module) Name() string { return "fulfilment" }

// RegisterEvents implements app.Module: the saga has no events.
func (Module) RegisterEvents(*eventstore.Registry) error { return nil }

// RegisterProcesses implements app.ProcessModule.
func (m Module) RegisterProcesses(p *app.Processes) error {
	timeout := m.PaymentTimeout
	if timeout <= 0 {
		timeout = DefaultPaymentTimeout
	}
	return p.Sagas.Register(newSaga(p.Registry, m.Prefix+SagaName, timeout))
}
