package retry_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cairn-es/cairn/retry"
)

func TestDelayGrowsWithinItsBoundsAndIsSpread(t *testing.T) {
	p := retry.Policy{MaxAttempts: 8, BaseDelay: 10 * time.Millisecond, MaxDelay: 100 * time.Millisecond}
	for n, ceiling := range map[int]time.Duration{1: 10, 2: 20, 3: 40, 4: 80, 5: 100, 30: 100, 1000: 100} {
		ceiling *= time.Millisecond
		seen := map[time.Duration]bool{}
		for range 200 {
			d := p.Delay(n)
			require.GreaterOrEqual(t, d, ceiling/2, "attempt %d", n)
			require.LessOrEqual(t, d, ceiling, "attempt %d", n)
			seen[d] = true
		}
		require.Greater(t, len(seen), 50, "attempt %d: the delays are spread, not one value", n)
	}
}

func TestDelayOfTinyOrZeroPolicies(t *testing.T) {
	require.Equal(t, time.Duration(0), retry.Policy{}.Delay(3))
	require.Equal(t, time.Duration(1), retry.Policy{BaseDelay: 1, MaxDelay: 1}.Delay(1))
}

func TestWithDefaultsFillsOnlyZeroFields(t *testing.T) {
	def := retry.Policy{MaxAttempts: 5, BaseDelay: 50 * time.Millisecond, MaxDelay: 5 * time.Second}
	require.Equal(t, def, retry.Policy{}.WithDefaults(def))
	got := retry.Policy{MaxAttempts: 1, BaseDelay: 10 * time.Second}.WithDefaults(def)
	require.Equal(t, retry.Policy{MaxAttempts: 1, BaseDelay: 10 * time.Second, MaxDelay: 10 * time.Second}, got,
		"MaxDelay is raised to BaseDelay")
}

func TestSleepEndsWithTheContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	require.ErrorIs(t, retry.Sleep(ctx, time.Hour), context.Canceled)
	require.NoError(t, retry.Sleep(context.Background(), time.Millisecond))
}

func ExamplePolicy_Delay() {
	p := retry.Policy{MaxAttempts: 4, BaseDelay: 100 * time.Millisecond, MaxDelay: time.Second}
	for n := 1; n < p.MaxAttempts; n++ {
		d := p.Delay(n)
		fmt.Println(n, d >= 50*time.Millisecond<<(n-1) && d <= 100*time.Millisecond<<(n-1))
	}
	// Output:
	// 1 true
	// 2 true
	// 3 true
}
