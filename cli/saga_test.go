package cli_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/cairn-es/cairn/cli"
	"github.com/cairn-es/cairn/saga"
)

// The saga commands read the saga tables; the instances are arranged in
// them directly, as the saga manager (tested in package saga) writes them.
func TestSagaListAndShow(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	_, err := h.pool.Exec(ctx, `
		INSERT INTO `+h.schema+`.saga_instances (saga, instance_id, status, state, compensations, outcome, correlation_id)
		VALUES ('fulfilment', 'o-1', 'active', '{"step":"paying"}', '[{"type":"ReleaseReservation","payload":{}}]', '', 'corr-1'),
		       ('fulfilment', 'o-2', 'failed', '{}', '[]', 'command ChargePayment c-9 failed: gateway down', 'corr-2'),
		       ('fulfilment', 'o-3', 'completed', '{}', '[]', 'completed', 'corr-3');
		INSERT INTO `+h.schema+`.saga_outbox (saga, instance_id, command_id, command_type, payload, correlation_id, causation_id, status, attempts, error)
		VALUES ('fulfilment', 'o-1', 'c-1', 'ChargePayment', '{"order_id":"o-1"}', 'corr-1', 'e-1', 'pending', 0, NULL),
		       ('fulfilment', 'o-2', 'c-9', 'ChargePayment', '{"order_id":"o-2"}', 'corr-2', 'e-2', 'dead', 10, 'gateway down');
		INSERT INTO `+h.schema+`.saga_timeouts (saga, instance_id, name, due_at) VALUES ('fulfilment', 'o-1', 'payment', now() + interval '1 hour');`)
	require.NoError(t, err)

	var listed struct {
		Stats     []saga.Stats    `json:"stats"`
		Instances []saga.Instance `json:"instances"`
	}
	require.NoError(t, json.Unmarshal([]byte(h.ok("saga", "list", "--json")), &listed))
	require.Len(t, listed.Stats, 1)
	st := listed.Stats[0]
	require.Equal(t, "fulfilment", st.Saga)
	require.Equal(t, map[string]int64{"active": 1, "completed": 1, "failed": 1}, st.Instances)
	require.Equal(t, int64(1), st.Commands["pending"])
	require.Equal(t, int64(1), st.Commands["dead"])
	require.Equal(t, int64(1), st.Timeouts)
	require.Len(t, listed.Instances, 3)

	require.NoError(t, json.Unmarshal([]byte(h.ok("saga", "list", "--status", "failed", "--json")), &listed))
	require.Len(t, listed.Instances, 1)
	require.Equal(t, "o-2", listed.Instances[0].ID)
	require.Equal(t, 1, listed.Instances[0].DeadCommands)

	human := h.ok("saga", "list")
	require.Contains(t, human, "SAGA")
	require.Regexp(t, `fulfilment\s+1\s+1\s+1\s+1\s+1`, human)

	var d saga.Detail
	require.NoError(t, json.Unmarshal([]byte(h.ok("saga", "show", "o-1", "--json")), &d))
	require.Equal(t, "active", d.Status)
	require.JSONEq(t, `{"step":"paying"}`, string(d.State))
	require.Equal(t, 1, d.Compensations)
	require.Len(t, d.Commands, 1)
	require.Equal(t, "ChargePayment", d.Commands[0].Type)
	require.Len(t, d.Timeouts, 1)
	require.Equal(t, "payment", d.Timeouts[0].Name)

	out := h.ok("saga", "show", "o-2")
	require.Contains(t, out, "outcome:        command ChargePayment c-9 failed: gateway down")
	require.True(t, strings.Contains(out, "dead"), out)

	r := h.run("saga", "show", "nope")
	require.Equal(t, 1, cli.ExitCode(r.e))
	require.Contains(t, r.err, `no saga instance "nope"`)

	r = h.run("saga", "list", "--status", "sleeping")
	require.Equal(t, 2, cli.ExitCode(r.e))
}
