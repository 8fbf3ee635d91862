package aggregate_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/cairn-es/cairn/aggregate"
)

func TestNewSetsID(t *testing.T) {
	a := aggregate.New(newAccount, "acc-1")
	require.Equal(t, "acc-1", a.ID())
	require.Zero(t, a.Version())
	require.Empty(t, a.Changes())
}

func TestRecordAppliesAndQueues(t *testing.T) {
	a := aggregate.New(newAccount, "1")
	require.NoError(t, a.OpenAccount("ann"))
	require.NoError(t, a.Deposit(500))
	aggregate.Record(a, deposited{AmountCents: 1}, withdrawn{AmountCents: 2})

	require.True(t, a.Open)
	require.EqualValues(t, 499, a.BalanceCents)
	require.Equal(t, 4, a.Applied)
	require.Zero(t, a.Version(), "recorded events are not stored yet")
	require.Equal(t, []any{accountOpened{Owner: "ann"}, deposited{AmountCents: 500}, deposited{AmountCents: 1}, withdrawn{AmountCents: 2}}, a.Changes())

	// Changes returns a copy.
	c := a.Changes()
	c[0] = nil
	require.Equal(t, accountOpened{Owner: "ann"}, a.Changes()[0])
}

func TestReplayAdvancesVersionWithoutQueueing(t *testing.T) {
	a := aggregate.New(newAccount, "1")
	aggregate.Replay(a, accountOpened{Owner: "bob"}, deposited{AmountCents: 7})
	require.EqualValues(t, 2, a.Version())
	require.Empty(t, a.Changes())
	require.EqualValues(t, 7, a.BalanceCents)
	require.Equal(t, 2, a.Applied)
}
