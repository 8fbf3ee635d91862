package shred

import (
	"context"
	"sync"
)

// MemoryKeyring keeps keys in the process: for tests and for services whose
// log is in memory too. Its zero value is not usable; call NewMemoryKeyring.
type MemoryKeyring struct {
	mu   sync.Mutex
	keys map[string]Key
}

var _ Keyring = (*MemoryKeyring)(nil)

// NewMemoryKeyring returns an empty keyring.
func NewMemoryKeyring() *MemoryKeyring { return &MemoryKeyring{keys: make(map[string]Key)} }

// GetOrCreate implements Keyring.
func (m *MemoryKeyring) GetOrCreate(_ context.Context, subject string) (Key, error) {
	if err := checkSubject(subject); err != nil {
		return Key{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if k, ok := m.keys[subject]; ok {
		return k, nil
	}
	k, err := NewKey()
	if err != nil {
		return Key{}, err
	}
	m.keys[subject] = k
	return k, nil
}

// Get implements Keyring.
func (m *MemoryKeyring) Get(_ context.Context, subject string) (Key, error) {
	if err := checkSubject(subject); err != nil {
		return Key{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	k, ok := m.keys[subject]
	if !ok {
		return Key{}, forgotten(subject)
	}
	return k, nil
}

// Forget implements Keyring.
func (m *MemoryKeyring) Forget(_ context.Context, subject string) error {
	if err := checkSubject(subject); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.keys, subject)
	return nil
}
