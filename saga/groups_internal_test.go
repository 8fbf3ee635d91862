package saga

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// groups joins each Concurrent command to the group of the one queued
// before it, and never groups a compensation.
func TestGroupsOfAHandlingsCommands(t *testing.T) {
	send := func(concurrent bool) queuedCommand { return queuedCommand{concurrent: concurrent} }
	comp := queuedCommand{compensation: true}
	for _, tc := range []struct {
		name  string
		sends []queuedCommand
		want  []string // "" for a command sent on its own
	}{
		{"none", []queuedCommand{send(false), send(false)}, []string{"", ""}},
		{"the first has no predecessor", []queuedCommand{send(true), send(false)}, []string{"", ""}},
		{"a run", []queuedCommand{send(false), send(true), send(true), send(false), send(true)}, []string{"a", "a", "a", "d", "d"}},
		{"a first Concurrent joins the second", []queuedCommand{send(true), send(true)}, []string{"a", "a"}},
		{"not after a compensation", []queuedCommand{comp, send(true), send(true)}, []string{"", "b", "b"}},
		{"a compensation is never grouped", []queuedCommand{send(false), {compensation: true, concurrent: true}}, []string{"", ""}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ids := []string{"a", "b", "c", "d", "e"}[:len(tc.sends)]
			got := make([]string, len(tc.sends))
			for i, g := range groups(tc.sends, ids) {
				if g != nil {
					got[i] = *g
				}
			}
			require.Equal(t, tc.want, got)
		})
	}
}
