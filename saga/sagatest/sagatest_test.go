package sagatest_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cairn-es/cairn/eventstore"
	"github.com/cairn-es/cairn/saga"
	"github.com/cairn-es/cairn/saga/sagatest"
)

// fakeT records failures instead of failing the real test. Only the methods
// sagatest and testify call are implemented; the embedded nil testing.TB
// makes any other call panic, which would show up as a failure.
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

// A trip: book a hotel, then a flight within ten minutes of asking for it,
// all within an hour.
type (
	Requested    struct{ ID string }
	HotelBooked  struct{ ID string }
	FlightBooked struct{ ID string }
	FlightFailed struct {
		ID     string
		Reason string
	}
	TripCancelled struct{ ID string }
	Paused        struct{ ID string } // compensates and cancels the expiry; the trip stays
	Pinged        struct{ ID string } // handled, and changes nothing
	Broken        struct{ ID string } // its handler fails
	Sloppy        struct{ ID string } // schedules a timeout without a handler
	Unrouted      struct{ ID string } // registered, but the saga has no handler
	NoKey         struct{}

	BookHotel    struct{ ID string }
	BookFlight   struct{ ID string }
	CancelHotel  struct{ ID string }
	CancelFlight struct{ ID string }
	Notify       struct {
		ID   string
		Text string
	}
)

type trip struct {
	RequestedAt time.Time
	TimedOutAt  time.Time
	Withdrawn   []string
	Cancelling  bool
	secret      string // not JSON: lost between messages
}

var errBroken = errors.New("broken")

func tripSaga() *saga.Definition[trip] {
	r := eventstore.NewRegistry()
	eventstore.MustRegister[Requested](r, "Requested")
	eventstore.MustRegister[HotelBooked](r, "HotelBooked")
	eventstore.MustRegister[FlightBooked](r, "FlightBooked")
	eventstore.MustRegister[FlightFailed](r, "FlightFailed")
	eventstore.MustRegister[TripCancelled](r, "TripCancelled")
	eventstore.MustRegister[Pinged](r, "Pinged")
	eventstore.MustRegister[Paused](r, "Paused")
	eventstore.MustRegister[Broken](r, "Broken")
	eventstore.MustRegister[Sloppy](r, "Sloppy")
	eventstore.MustRegister[Unrouted](r, "Unrouted")
	eventstore.MustRegister[NoKey](r, "NoKey")

	d := saga.New[trip]("trip", r)
	saga.StartOn(d, func(e Requested) string { return e.ID }, func(c *saga.Context[trip], e Requested) error {
		c.State.RequestedAt, c.State.secret = c.Now(), "kept in memory only"
		c.Send(BookHotel(e))
		c.Schedule("expire", time.Hour)
		return nil
	})
	saga.On(d, func(e HotelBooked) string { return e.ID }, func(c *saga.Context[trip], e HotelBooked) error {
		if c.State.secret != "" {
			return errors.New("the state did not go through JSON")
		}
		c.AddCompensation(CancelHotel(e))
		c.Send(BookFlight(e), saga.Deadline("flight", 10*time.Minute))
		return nil
	})
	saga.On(d, func(e FlightBooked) string { return e.ID }, func(c *saga.Context[trip], e FlightBooked) error {
		c.AddCompensation(CancelFlight(e))
		c.CancelTimeout("flight")
		c.CancelTimeout("expire")
		c.Send(Notify{ID: e.ID, Text: "booked"}, saga.Always())
		c.Complete("booked")
		return nil
	})
	saga.On(d, func(e FlightFailed) string { return e.ID }, func(c *saga.Context[trip], e FlightFailed) error {
		c.Compensate()
		c.Fail("flight: " + e.Reason)
		return nil
	})
	saga.On(d, func(e TripCancelled) string { return e.ID }, func(c *saga.Context[trip], e TripCancelled) error {
		c.Compensate() // the instance waits for what it sent; OnWithdrawn ends it
		c.State.Cancelling = true
		c.Schedule("expire", time.Minute)
		return nil
	})
	saga.On(d, func(e Paused) string { return e.ID }, func(c *saga.Context[trip], e Paused) error {
		c.Compensate()
		c.CancelTimeout("expire")
		return nil
	})
	saga.On(d, func(e Pinged) string { return e.ID }, func(*saga.Context[trip], Pinged) error { return nil })
	saga.On(d, func(e Broken) string { return e.ID }, func(*saga.Context[trip], Broken) error { return errBroken })
	saga.On(d, func(e Sloppy) string { return e.ID }, func(c *saga.Context[trip], e Sloppy) error {
		c.Schedule("nowhere", time.Second)
		return nil
	})
	saga.On(d, func(NoKey) string { return "" }, func(*saga.Context[trip], NoKey) error { return nil })
	saga.OnTimeout(d, "flight", func(c *saga.Context[trip]) error {
		c.State.TimedOutAt = c.Now()
		c.Compensate()
		c.Fail("no flight in time")
		return nil
	})
	saga.OnTimeout(d, "expire", func(c *saga.Context[trip]) error {
		c.State.TimedOutAt = c.Now()
		c.Compensate()
		c.Complete("expired")
		return nil
	})
	saga.OnWithdrawn(d, func(c *saga.Context[trip], ws []saga.Withdrawn) error {
		for _, w := range ws {
			c.State.Withdrawn = append(c.State.Withdrawn, fmt.Sprintf("%s %+v", w.Type, w.Command))
		}
		if c.State.Cancelling {
			c.Complete("cancelled")
		}
		return nil
	})
	return d
}

// orderSaga sends two commands at once.
func orderSaga() *saga.Definition[trip] {
	r := eventstore.NewRegistry()
	eventstore.MustRegister[Requested](r, "Requested")
	d := saga.New[trip]("two", r)
	saga.StartOn(d, func(e Requested) string { return e.ID }, func(c *saga.Context[trip], e Requested) error {
		c.Send(BookHotel(e))
		c.Send(BookFlight(e))
		return nil
	})
	return d
}

var start = time.Date(2025, time.January, 1, 0, 0, 0, 0, time.UTC)

func TestPassingScenarios(t *testing.T) {
	ft := &fakeT{}
	// Start: a command and a timeout; the clock is the event's time.
	s := sagatest.For(ft, tripSaga()).
		When(Requested{ID: "t"}).
		Then(sagatest.Expect{
			Commands:  []sagatest.Command{sagatest.Send(BookHotel{ID: "t"})},
			Scheduled: map[string]time.Duration{"expire": time.Hour},
		})
	require.Equal(t, start, s.RequestedAt)

	// A step forward: a compensation registered, a command with a deadline.
	sagatest.For(ft, tripSaga()).
		Given(Requested{ID: "t"}).
		When(HotelBooked{ID: "t"}).
		Then(sagatest.Expect{
			Commands:      []sagatest.Command{sagatest.Send(BookFlight{ID: "t"}, saga.Deadline("flight", 10*time.Minute))},
			Compensations: []any{CancelHotel{ID: "t"}},
		})

	// The end: timeouts cancelled, a command sent always, completed.
	sagatest.For(ft, tripSaga()).
		Given(Requested{ID: "t"}, HotelBooked{ID: "t"}).
		When(FlightBooked{ID: "t"}).
		Then(sagatest.Expect{
			Commands:      []sagatest.Command{sagatest.Send(Notify{ID: "t", Text: "booked"}, saga.Always())},
			Compensations: []any{CancelHotel{ID: "t"}, CancelFlight{ID: "t"}},
			Cancelled:     []string{"flight", "expire"},
			Status:        saga.StatusCompleted, Outcome: "booked",
		})

	// An event given as a pointer reaches the handler as a value.
	sagatest.For(ft, tripSaga()).
		Given(&Requested{ID: "t"}).
		When(&HotelBooked{ID: "t"}).
		Then(sagatest.Expect{
			Commands:      []sagatest.Command{sagatest.Send(BookFlight{ID: "t"}, saga.Deadline("flight", 10*time.Minute))},
			Compensations: []any{CancelHotel{ID: "t"}},
		})

	// Failure: compensations run, last registered first, and are cleared.
	sagatest.For(ft, tripSaga()).
		Given(Requested{ID: "t"}, HotelBooked{ID: "t"}).
		When(FlightFailed{ID: "t", Reason: "full"}).
		Then(sagatest.Expect{
			Commands: []sagatest.Command{sagatest.Compensation(CancelHotel{ID: "t"})},
			Status:   saga.StatusFailed, Outcome: "flight: full",
		})

	// A rejection without OnRejected compensates and fails the instance.
	sagatest.For(ft, tripSaga()).
		Given(Requested{ID: "t"}, HotelBooked{ID: "t"}).
		When(sagatest.Rejected(BookFlight{ID: "t"}, "no seats")).
		Then(sagatest.Expect{
			Commands: []sagatest.Command{sagatest.Compensation(CancelHotel{ID: "t"})},
			Status:   saga.StatusFailed, Outcome: "BookFlight rejected: no seats",
		})

	// Ignored: before the start, after the end, an empty key.
	sagatest.For(ft, tripSaga()).When(HotelBooked{ID: "t"}).ThenIgnored()
	sagatest.For(ft, tripSaga()).Given(Requested{ID: "t"}, FlightFailed{ID: "t"}).When(HotelBooked{ID: "t"}).ThenIgnored()
	sagatest.For(ft, tripSaga()).Given(Requested{ID: "t"}).When(NoKey{}).ThenIgnored()
	// A rejection after the end.
	sagatest.For(ft, tripSaga()).
		Given(Requested{ID: "t"}, FlightFailed{ID: "t"}).
		When(sagatest.Rejected(BookHotel{ID: "t"}, "closed")).
		ThenIgnored()

	// Handler errors.
	sagatest.For(ft, tripSaga()).Given(Requested{ID: "t"}).When(Broken{ID: "t"}).ThenError(errBroken)
	sagatest.For(ft, tripSaga()).Given(Requested{ID: "t"}).When(Sloppy{ID: "t"}).ThenError(nil)
	require.Empty(t, ft.errors)
}

func TestClock(t *testing.T) {
	from := time.Date(2030, time.June, 1, 9, 0, 0, 0, time.UTC)
	// A deadline runs from its command's send: the relay sent BookFlight
	// only after Pinged, five minutes after HotelBooked queued it.
	s := sagatest.For(t, tripSaga()).WithStart(from).
		Given(Requested{ID: "t"}, sagatest.Unsent(HotelBooked{ID: "t"}), sagatest.After(5*time.Minute), Pinged{ID: "t"}).
		When(sagatest.Timeout("flight")).
		Then(sagatest.Expect{
			Commands: []sagatest.Command{sagatest.Compensation(CancelHotel{ID: "t"})},
			Status:   saga.StatusFailed, Outcome: "no flight in time",
		})
	require.Equal(t, from, s.RequestedAt)
	require.Equal(t, from.Add(15*time.Minute), s.TimedOutAt)

	// Relay sends what Unsent held back, at the clock's time.
	s = sagatest.For(t, tripSaga()).WithStart(from).
		Given(Requested{ID: "t"}, sagatest.Unsent(HotelBooked{ID: "t"}), sagatest.After(7*time.Minute), sagatest.Relay()).
		When(sagatest.Timeout("flight")).
		Then(sagatest.Expect{
			Commands: []sagatest.Command{sagatest.Compensation(CancelHotel{ID: "t"})},
			Status:   saga.StatusFailed, Outcome: "no flight in time",
		})
	require.Equal(t, from.Add(17*time.Minute), s.TimedOutAt)

	// A scheduled timeout runs from its handling; After moves events on.
	s = sagatest.For(t, tripSaga()).WithStart(from).
		Given(sagatest.After(time.Minute), Requested{ID: "t"}, sagatest.After(59*time.Minute)).
		When(sagatest.Timeout("expire")).
		Then(sagatest.Expect{Status: saga.StatusCompleted, Outcome: "expired"})
	require.Equal(t, from.Add(time.Minute), s.RequestedAt)
	require.Equal(t, from.Add(61*time.Minute), s.TimedOutAt)

	// A timeout fires at its due time even when the clock has passed it
	// (the timer was late): Now is then the clock's.
	s = sagatest.For(t, tripSaga()).WithStart(from).
		Given(Requested{ID: "t"}, sagatest.After(2*time.Hour)).
		When(sagatest.Timeout("expire")).
		Then(sagatest.Expect{Status: saga.StatusCompleted, Outcome: "expired"})
	require.Equal(t, from.Add(2*time.Hour), s.TimedOutAt)
}

func TestTimeoutsThatDoNotFire(t *testing.T) {
	ft := &fakeT{}
	// Its command unsent, the deadline has not started.
	sagatest.For(ft, tripSaga()).
		Given(Requested{ID: "t"}, sagatest.Unsent(HotelBooked{ID: "t"})).
		When(sagatest.Timeout("flight")).
		ThenIgnored()
	// Cancelled.
	sagatest.For(ft, tripSaga()).
		Given(Requested{ID: "t"}, HotelBooked{ID: "t"}, FlightBooked{ID: "t"}).
		When(sagatest.Timeout("expire")).
		ThenIgnored()
	// Dropped with the end of the instance.
	sagatest.For(ft, tripSaga()).
		Given(Requested{ID: "t"}, FlightFailed{ID: "t"}).
		When(sagatest.Timeout("expire")).
		ThenIgnored()
	// Fired already.
	sagatest.For(ft, tripSaga()).
		Given(Requested{ID: "t"}, HotelBooked{ID: "t"}, sagatest.Timeout("flight")).
		When(sagatest.Timeout("flight")).
		ThenIgnored()
	// Cancelled, the instance still active.
	sagatest.For(ft, tripSaga()).
		Given(Requested{ID: "t"}, Paused{ID: "t"}).
		When(sagatest.Timeout("expire")).
		ThenIgnored()
	// Withdrawn with its command, the instance still active.
	sagatest.For(ft, tripSaga()).
		Given(Requested{ID: "t"}, sagatest.Unsent(HotelBooked{ID: "t"}), Paused{ID: "t"}).
		When(sagatest.Timeout("flight")).
		ThenIgnored()
	// Withdrawn with its command.
	sagatest.For(ft, tripSaga()).
		Given(Requested{ID: "t"}, sagatest.Unsent(HotelBooked{ID: "t"}), TripCancelled{ID: "t"}).
		When(sagatest.Timeout("flight")).
		ThenIgnored()
	require.Empty(t, ft.errors)
}

func TestWithdrawal(t *testing.T) {
	// Unsent commands are withdrawn when the instance compensates; the
	// OnWithdrawn handler sees them decoded, and its effects are part of
	// the handling.
	s := sagatest.For(t, tripSaga()).
		Given(Requested{ID: "t"}, sagatest.Unsent(HotelBooked{ID: "t"})).
		When(TripCancelled{ID: "t"}).
		Then(sagatest.Expect{
			Commands:  []sagatest.Command{sagatest.Compensation(CancelHotel{ID: "t"})},
			Withdrawn: []any{BookFlight{ID: "t"}},
			Scheduled: map[string]time.Duration{"expire": time.Minute},
			Status:    saga.StatusCompleted, Outcome: "cancelled",
		})
	require.Equal(t, []string{"BookFlight {ID:t}"}, s.Withdrawn)

	// Sent, they are not.
	sagatest.For(t, tripSaga()).
		Given(Requested{ID: "t"}, HotelBooked{ID: "t"}).
		When(TripCancelled{ID: "t"}).
		Then(sagatest.Expect{
			Commands:  []sagatest.Command{sagatest.Compensation(CancelHotel{ID: "t"})},
			Scheduled: map[string]time.Duration{"expire": time.Minute},
		})

	// A later message that is not Unsent lets the relay catch up.
	sagatest.For(t, tripSaga()).
		Given(Requested{ID: "t"}, sagatest.Unsent(HotelBooked{ID: "t"}), Pinged{ID: "t"}).
		When(TripCancelled{ID: "t"}).
		Then(sagatest.Expect{
			Commands:  []sagatest.Command{sagatest.Compensation(CancelHotel{ID: "t"})},
			Scheduled: map[string]time.Duration{"expire": time.Minute},
		})
}

func TestFailures(t *testing.T) {
	for _, tc := range []struct {
		name string
		run  func(testing.TB)
		want []string // substrings of the report
	}{
		{
			name: "different command",
			run: func(t testing.TB) {
				sagatest.For(t, tripSaga()).Given(Requested{ID: "t"}).When(HotelBooked{ID: "t"}).
					Then(sagatest.Expect{
						Commands:      []sagatest.Command{sagatest.Send(BookFlight{ID: "u"}, saga.Deadline("flight", 10*time.Minute))},
						Compensations: []any{CancelHotel{ID: "t"}},
					})
			},
			want: []string{"the handling of sagatest_test.HotelBooked differs", `- send: BookFlight {"ID":"u"} deadline flight 10m0s`,
				`+ send: BookFlight {"ID":"t"} deadline flight 10m0s`, `  compensation registered: CancelHotel {"ID":"t"}`},
		},
		{
			name: "missing option",
			run: func(t testing.TB) {
				sagatest.For(t, tripSaga()).Given(Requested{ID: "t"}).When(HotelBooked{ID: "t"}).
					Then(sagatest.Expect{
						Commands:      []sagatest.Command{sagatest.Send(BookFlight{ID: "t"})},
						Compensations: []any{CancelHotel{ID: "t"}},
					})
			},
			want: []string{`- send: BookFlight {"ID":"t"}` + "\n", `+ send: BookFlight {"ID":"t"} deadline flight 10m0s`},
		},
		{
			name: "a compensation expected as a send",
			run: func(t testing.TB) {
				sagatest.For(t, tripSaga()).Given(Requested{ID: "t"}, HotelBooked{ID: "t"}).When(FlightFailed{ID: "t", Reason: "full"}).
					Then(sagatest.Expect{
						Commands: []sagatest.Command{sagatest.Send(CancelHotel{ID: "t"}, saga.Always())},
						Status:   saga.StatusFailed, Outcome: "flight: full",
					})
			},
			want: []string{`+ send: compensation CancelHotel {"ID":"t"}`, `- send: CancelHotel {"ID":"t"} always`},
		},
		{
			name: "unexpected compensation, timeout and status",
			run: func(t testing.TB) {
				sagatest.For(t, tripSaga()).Given(Requested{ID: "t"}, HotelBooked{ID: "t"}).When(FlightBooked{ID: "t"}).
					Then(sagatest.Expect{})
			},
			want: []string{"- status: active", "+ status: completed booked", `+ compensation registered: CancelFlight {"ID":"t"}`, "+ cancelled: expire"},
		},
		{
			name: "different state",
			run: func(t testing.TB) {
				sagatest.For(t, tripSaga()).When(Requested{ID: "t"}).
					Then(sagatest.Expect{
						Commands:  []sagatest.Command{sagatest.Send(BookHotel{ID: "t"})},
						Scheduled: map[string]time.Duration{"expire": time.Hour},
						State:     trip{},
					})
			},
			want: []string{"the state after sagatest_test.Requested differs"},
		},
		{
			name: "ignored, expected handled",
			run: func(t testing.TB) {
				sagatest.For(t, tripSaga()).When(HotelBooked{ID: "t"}).Then(sagatest.Expect{})
			},
			want: []string{"ignored", "has not started"},
		},
		{
			name: "handled, expected ignored",
			run: func(t testing.TB) {
				sagatest.For(t, tripSaga()).When(Requested{ID: "t"}).ThenIgnored()
			},
			want: []string{"expected it ignored, but it was handled", "BookHotel"},
		},
		{
			name: "error, expected handled",
			run: func(t testing.TB) {
				sagatest.For(t, tripSaga()).Given(Requested{ID: "t"}).When(Broken{ID: "t"}).Then(sagatest.Expect{})
			},
			want: []string{"handler's error", "broken"},
		},
		{
			name: "other error",
			run: func(t testing.TB) {
				sagatest.For(t, tripSaga()).Given(Requested{ID: "t"}).When(Sloppy{ID: "t"}).ThenError(errBroken)
			},
			want: []string{"expected an error matching broken", `timeout "nowhere" scheduled without an OnTimeout handler`},
		},
		{
			name: "no error",
			run: func(t testing.TB) {
				sagatest.For(t, tripSaga()).When(Requested{ID: "t"}).ThenError(nil)
			},
			want: []string{"expected an error, got a handling"},
		},
		{
			name: "failing history",
			run: func(t testing.TB) {
				sagatest.For(t, tripSaga()).Given(Requested{ID: "t"}, Broken{ID: "t"}).When(Pinged{ID: "t"}).ThenIgnored()
			},
			want: []string{"Given item 1, sagatest_test.Broken: broken"},
		},
		{
			name: "a timeout in the history that is not pending",
			run: func(t testing.TB) {
				sagatest.For(t, tripSaga()).Given(Requested{ID: "t"}, sagatest.Timeout("flight")).When(Pinged{ID: "t"}).Then(sagatest.Expect{})
			},
			want: []string{`Given item 1, Timeout("flight")`, "not pending"},
		},
		{
			name: "a rejection of a command never sent",
			run: func(t testing.TB) {
				sagatest.For(t, tripSaga()).Given(Requested{ID: "t"}).When(sagatest.Rejected(BookFlight{ID: "t"}, "no")).Then(sagatest.Expect{})
			},
			want: []string{"impossible scenario", "no such command sent"},
		},
		{
			name: "a rejection of a command still queued",
			run: func(t testing.TB) {
				sagatest.For(t, tripSaga()).Given(sagatest.Unsent(Requested{ID: "t"})).When(sagatest.Rejected(BookHotel{ID: "t"}, "no")).Then(sagatest.Expect{})
			},
			want: []string{"has not been sent"},
		},
		{
			name: "another instance",
			run: func(t testing.TB) {
				sagatest.For(t, tripSaga()).Given(Requested{ID: "t"}).When(Pinged{ID: "u"}).ThenIgnored()
			},
			want: []string{`is for instance "u", and the scenario's instance is "t"`},
		},
		{
			name: "another instance than WithID",
			run: func(t testing.TB) {
				sagatest.For(t, tripSaga()).WithID("u").When(Requested{ID: "t"}).ThenIgnored()
			},
			want: []string{`is for instance "t", and the scenario's instance is "u"`},
		},
		{
			name: "an event the saga does not handle",
			run: func(t testing.TB) {
				sagatest.For(t, tripSaga()).When(Unrouted{ID: "t"}).ThenIgnored()
			},
			want: []string{"does not handle sagatest_test.Unrouted"},
		},
		{
			name: "an unregistered event",
			run: func(t testing.TB) {
				sagatest.For(t, tripSaga()).When(BookHotel{ID: "t"}).ThenIgnored()
			},
			want: []string{"sagatest_test.BookHotel cannot be stored", "not a registered event type"},
		},
		{
			name: "After as When",
			run: func(t testing.TB) {
				sagatest.For(t, tripSaga()).When(sagatest.After(time.Second)).ThenIgnored()
			},
			want: []string{"After(1s) is for the history"},
		},
		{
			name: "Relay as When",
			run: func(t testing.TB) {
				sagatest.For(t, tripSaga()).When(sagatest.Relay()).ThenIgnored()
			},
			want: []string{"Relay() is for the history"},
		},
		{
			name: "Unsent around a Message that is not handled",
			run: func(t testing.TB) {
				sagatest.For(t, tripSaga()).Given(sagatest.Unsent(sagatest.After(time.Second))).When(Requested{ID: "t"}).ThenIgnored()
			},
			want: []string{"Unsent wraps an event, a Timeout or a Rejected"},
		},
		{
			name: "commands in another order",
			run: func(t testing.TB) {
				sagatest.For(t, orderSaga()).When(Requested{ID: "t"}).
					Then(sagatest.Expect{Commands: []sagatest.Command{sagatest.Send(BookFlight{ID: "t"}), sagatest.Send(BookHotel{ID: "t"})}})
			},
			want: []string{"(the same lines, in another order)"},
		},
		{
			name: "the clock going back",
			run: func(t testing.TB) {
				sagatest.For(t, tripSaga()).Given(sagatest.After(-time.Second)).When(Requested{ID: "t"}).ThenIgnored()
			},
			want: []string{"the clock does not go back"},
		},
		{
			name: "no When",
			run: func(t testing.TB) {
				sagatest.For(t, tripSaga()).Then(sagatest.Expect{})
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
