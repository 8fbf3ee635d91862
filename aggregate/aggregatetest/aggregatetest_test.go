package aggregatetest_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/cairn-es/cairn/aggregate"
	"github.com/cairn-es/cairn/aggregate/aggregatetest"
	"github.com/cairn-es/cairn/eventstore"
)

// fakeT records failures instead of failing the real test. Only the methods
// aggregatetest and testify call are implemented; the embedded nil
// testing.TB makes any other call panic, which would show up as a failure.
type fakeT struct {
	testing.TB
	errors []string
}

func (f *fakeT) Helper() {}
func (f *fakeT) Errorf(format string, args ...any) {
	f.errors = append(f.errors, fmt.Sprintf(format, args...))
}
func (f *fakeT) Error(args ...any) { f.errors = append(f.errors, fmt.Sprint(args...)) }
func (f *fakeT) Name() string      { return "fake" }
func (f *fakeT) Failed() bool      { return len(f.errors) > 0 }
func (f *fakeT) output() string    { return strings.Join(f.errors, "\n") }

// A counter that counts up to a limit.

type incremented struct {
	By int `json:"by"`
}

type reset struct{}

var errLimit = errors.New("limit reached")

type counter struct {
	aggregate.Base
	Value int
}

func newCounter() *counter { return &counter{} }

func (c *counter) Apply(event any) {
	switch e := event.(type) {
	case incremented:
		c.Value += e.By
	case reset:
		c.Value = 0
	}
}

func (c *counter) Increment(by int) error {
	if c.Value+by > 10 {
		return fmt.Errorf("counter %s: %w", c.ID(), errLimit)
	}
	aggregate.Record(c, incremented{By: by})
	return nil
}

func (c *counter) Reset() error {
	if c.Value != 0 {
		aggregate.Record(c, reset{})
	}
	return nil
}

// sloppyIncrement records an event and then fails.
func (c *counter) sloppyIncrement() error {
	aggregate.Record(c, incremented{By: 1})
	return errLimit
}

func TestPassingScenarios(t *testing.T) {
	ft := &fakeT{}
	aggregatetest.For(ft, newCounter).
		When(func(c *counter) error { return c.Increment(2) }).
		Then(incremented{By: 2})
	aggregatetest.For(ft, newCounter).
		Given(incremented{By: 3}, incremented{By: 4}).
		When(func(c *counter) error { return c.Increment(3) }).
		Then(incremented{By: 3})
	aggregatetest.For(ft, newCounter).
		Given(incremented{By: 9}).
		When(func(c *counter) error { return c.Increment(2) }).
		ThenError(errLimit)
	aggregatetest.For(ft, newCounter).
		When(func(c *counter) error { return c.Reset() }).
		ThenNothing()
	aggregatetest.For(ft, newCounter).
		Given(incremented{By: 1}).
		When(func(c *counter) error { return c.Reset() }).
		Then(reset{})
	require.Empty(t, ft.errors)
}

func TestThenReturnsTheAggregate(t *testing.T) {
	var sawVersion int64
	c := aggregatetest.For(t, newCounter).
		WithID("c-7").
		Given(incremented{By: 1}, incremented{By: 1}).
		When(func(c *counter) error {
			sawVersion = c.Version()
			return c.Increment(5)
		}).
		Then(incremented{By: 5})
	require.EqualValues(t, 2, sawVersion, "Given events count as stored")
	require.Equal(t, "c-7", c.ID())
	require.Equal(t, 7, c.Value)
}

func TestDefaultID(t *testing.T) {
	c := aggregatetest.For(t, newCounter).When(func(*counter) error { return nil }).ThenNothing()
	require.Equal(t, aggregatetest.DefaultID, c.ID())
}

func TestFailures(t *testing.T) {
	for _, tc := range []struct {
		name string
		run  func(testing.TB)
		want []string // substrings of the report
	}{
		{
			name: "different event",
			run: func(t testing.TB) {
				aggregatetest.For(t, newCounter).
					When(func(c *counter) error { return c.Increment(2) }).
					Then(incremented{By: 3})
			},
			want: []string{"recorded events differ", "Diff:", "-", "By: (int) 3", "+", "By: (int) 2"},
		},
		{
			name: "different event type",
			run: func(t testing.TB) {
				aggregatetest.For(t, newCounter).
					Given(incremented{By: 2}).
					When(func(c *counter) error { return c.Reset() }).
					Then(incremented{By: 0})
			},
			want: []string{"recorded events differ", "aggregatetest_test.reset", "aggregatetest_test.incremented"},
		},
		{
			name: "missing event",
			run: func(t testing.TB) {
				aggregatetest.For(t, newCounter).
					When(func(c *counter) error { return c.Increment(2) }).
					Then(incremented{By: 2}, reset{})
			},
			want: []string{"recorded events differ"},
		},
		{
			name: "extra event",
			run: func(t testing.TB) {
				aggregatetest.For(t, newCounter).
					When(func(c *counter) error { return c.Increment(2) }).
					Then()
			},
			want: []string{"recorded events differ"},
		},
		{
			name: "ThenNothing with an event",
			run: func(t testing.TB) {
				aggregatetest.For(t, newCounter).
					Given(incremented{By: 1}).
					When(func(c *counter) error { return c.Reset() }).
					ThenNothing()
			},
			want: []string{"recorded events differ", "reset"},
		},
		{
			name: "Then with an error",
			run: func(t testing.TB) {
				aggregatetest.For(t, newCounter).
					Given(incremented{By: 10}).
					When(func(c *counter) error { return c.Increment(1) }).
					Then(incremented{By: 1})
			},
			want: []string{"expected events, got error", "limit reached", "incremented"},
		},
		{
			name: "ThenNothing with an error",
			run: func(t testing.TB) {
				aggregatetest.For(t, newCounter).
					Given(incremented{By: 10}).
					When(func(c *counter) error { return c.Increment(1) }).
					ThenNothing()
			},
			want: []string{"expected events, got error", "(none)"},
		},
		{
			name: "ThenError without an error",
			run: func(t testing.TB) {
				aggregatetest.For(t, newCounter).
					When(func(c *counter) error { return c.Increment(1) }).
					ThenError(errLimit)
			},
			want: []string{"expected error limit reached, got none", "incremented"},
		},
		{
			name: "ThenError with another error",
			run: func(t testing.TB) {
				aggregatetest.For(t, newCounter).
					When(func(*counter) error { return errors.New("boom") }).
					ThenError(errLimit)
			},
			want: []string{"expected an error matching limit reached", "got: boom"},
		},
		{
			name: "ThenError with events recorded",
			run: func(t testing.TB) {
				aggregatetest.For(t, newCounter).
					When(func(c *counter) error { return c.sloppyIncrement() }).
					ThenError(errLimit)
			},
			want: []string{"recorded events", "incremented"},
		},
		{
			name: "no When",
			run: func(t testing.TB) {
				aggregatetest.For(t, newCounter).Then()
			},
			want: []string{"without When"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ft := &fakeT{}
			tc.run(ft)
			require.True(t, ft.Failed(), "the scenario must fail")
			for _, w := range tc.want {
				require.Contains(t, ft.output(), w)
			}
		})
	}
}

func TestWithRegistry(t *testing.T) {
	reg := eventstore.NewRegistry()
	eventstore.MustRegister[incremented](reg, "Incremented")

	ft := &fakeT{}
	aggregatetest.For(ft, newCounter).WithRegistry(reg).
		Given(incremented{By: 1}).
		When(func(c *counter) error { return c.Increment(1) }).
		Then(incremented{By: 1})
	require.Empty(t, ft.errors)

	// reset is not registered: as history it cannot be stored...
	ft = &fakeT{}
	aggregatetest.For(ft, newCounter).WithRegistry(reg).
		Given(reset{}).
		When(func(c *counter) error { return c.Increment(1) }).
		Then(incremented{By: 1})
	require.True(t, ft.Failed())
	require.Contains(t, ft.output(), "Given event 0")
	require.Contains(t, ft.output(), "not a registered event type")

	// ...and recorded, it could not be saved.
	ft = &fakeT{}
	aggregatetest.For(ft, newCounter).WithRegistry(reg).
		Given(incremented{By: 1}).
		When(func(c *counter) error { return c.Reset() }).
		Then(reset{})
	require.True(t, ft.Failed())
	require.Contains(t, ft.output(), "recorded event 0")
	require.Contains(t, ft.output(), "does not encode")

	// History goes through JSON: a field that does not survive the round
	// trip (unexported here) is lost, as it would be in the store.
	type lossy struct{ by int }
	lossyReg := eventstore.NewRegistry()
	eventstore.MustRegister[lossy](lossyReg, "Lossy")
	var seen any
	aggregatetest.For(t, func() *recorder { return &recorder{seen: &seen} }).WithRegistry(lossyReg).
		Given(lossy{by: 5}).
		When(func(*recorder) error { return nil }).
		ThenNothing()
	require.Equal(t, lossy{}, seen)
}

type recorder struct {
	aggregate.Base
	seen *any
}

func (r *recorder) Apply(event any) { *r.seen = event }

// exampleT stands in for the *testing.T of a real test.
type exampleT struct {
	testing.TB
	failed bool
}

func (t *exampleT) Helper()               {}
func (t *exampleT) Name() string          { return "ExampleFor" }
func (t *exampleT) Errorf(string, ...any) { t.failed = true }
func (t *exampleT) Failed() bool          { return t.failed }

func ExampleFor() {
	t := &exampleT{} // in a test, the *testing.T

	// Given a counter at 4, incrementing by 5 records the increment.
	c := aggregatetest.For(t, newCounter).
		Given(incremented{By: 4}).
		When(func(c *counter) error { return c.Increment(5) }).
		Then(incremented{By: 5})
	fmt.Println(c.Value, t.Failed())

	// Given a counter at 9, incrementing by 5 fails and records nothing.
	aggregatetest.For(t, newCounter).
		Given(incremented{By: 9}).
		When(func(c *counter) error { return c.Increment(5) }).
		ThenError(errLimit)
	fmt.Println(t.Failed())

	// A wrong expectation fails the test, with a diff of the events.
	aggregatetest.For(t, newCounter).
		When(func(c *counter) error { return c.Increment(1) }).
		Then(incremented{By: 2})
	fmt.Println(t.Failed())

	// Output:
	// 9 false
	// false
	// true
}
