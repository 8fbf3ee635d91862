// Package retry is Cairn's one retry policy: a bounded number of attempts
// with exponential backoff and jitter between them. The command
// dispatcher's conflict retries, the projection daemon's retries of a
// failing event and the saga relay's resends of a failing command all take
// a Policy, each with defaults of its own, and all wait with Sleep.
package retry

import (
	"context"
	"math/rand/v2"
	"time"
)

// Policy bounds and spaces the attempts at something that fails. Zero
// fields take the defaults of whoever applies the policy (see WithDefaults).
type Policy struct {
	// MaxAttempts counts the first attempt: 1 never retries.
	MaxAttempts int
	// BaseDelay is the wait before the first retry; it doubles with each
	// retry, up to MaxDelay.
	BaseDelay time.Duration
	// MaxDelay caps every wait.
	MaxDelay time.Duration
}

// WithDefaults fills p's zero (or negative) fields from def, and raises
// MaxDelay to BaseDelay when it is below it.
func (p Policy) WithDefaults(def Policy) Policy {
	if p.MaxAttempts <= 0 {
		p.MaxAttempts = def.MaxAttempts
	}
	if p.BaseDelay <= 0 {
		p.BaseDelay = def.BaseDelay
	}
	if p.MaxDelay <= 0 {
		p.MaxDelay = def.MaxDelay
	}
	p.MaxDelay = max(p.MaxDelay, p.BaseDelay)
	return p
}

// Delay is the wait after failed attempt n (1-based) before the next one:
// d = min(MaxDelay, BaseDelay·2ⁿ⁻¹), then a uniformly random time in
// [d/2, d]. The random half spreads out the retries of things that failed
// together (writers that conflicted, commands that failed in one outage);
// the fixed half keeps the wait growing, so a retry is never immediate.
func (p Policy) Delay(n int) time.Duration {
	d := p.BaseDelay
	for i := 1; i < n && d < p.MaxDelay; i++ {
		d *= 2
	}
	d = min(d, p.MaxDelay)
	if d <= 1 {
		return max(d, 0)
	}
	half := d / 2
	return half + rand.N(d-half+1)
}

// Sleep waits d, or until ctx ends, and then returns ctx's error.
func Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
