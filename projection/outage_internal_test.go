package projection

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// levels is a slog handler recording "LEVEL message" per record.
type levels struct {
	mu  sync.Mutex
	got []string
}

func (h *levels) Enabled(context.Context, slog.Level) bool { return true }
func (h *levels) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *levels) WithGroup(string) slog.Handler            { return h }
func (h *levels) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.got = append(h.got, r.Level.String()+" "+r.Message)
	return nil
}

// A runner retrying every second through an outage warns when it starts
// and when the error changes, logs the repeats at Debug, and says once, at
// Info, that it recovered.
func TestOutageIsLoggedAtItsStartChangesAndEnd(t *testing.T) {
	h := &levels{}
	log := slog.New(h)
	var o outage
	o.recovered(log, "leading") // no outage: nothing to say
	refused := errors.New("connecting: connection refused")
	o.failed(log, refused, time.Second)
	o.failed(log, refused, time.Second)
	o.failed(log, refused, time.Second)
	o.failed(log, errors.New("connecting: too many clients"), time.Second)
	o.recovered(log, "leading")
	o.recovered(log, "leading")
	require.Equal(t, []string{
		"WARN cairn: projection runner interrupted; retrying",
		"DEBUG cairn: projection runner retry failed",
		"DEBUG cairn: projection runner retry failed",
		"WARN cairn: projection runner still retrying",
		"INFO cairn: projection runner recovered",
	}, h.got)
	require.Zero(t, o.attempts, "a recovery starts the count afresh")

	// A long outage is recalled now and then.
	o.failed(log, refused, time.Second)
	o.logged = o.logged.Add(-outageLogEvery)
	o.failed(log, refused, time.Second)
	require.Equal(t, "WARN cairn: projection runner still retrying", h.got[len(h.got)-1])
}
