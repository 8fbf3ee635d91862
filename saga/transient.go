package saga

import (
	"errors"
	"net"

	"github.com/jackc/pgx/v5/pgconn"
)

// transient: TEMPORARY until internal/pgerr lands.
func transient(err error) bool {
	var ce *pgconn.ConnectError
	var ne *net.OpError
	return errors.As(err, &ce) || errors.As(err, &ne) || pgconn.SafeToRetry(err)
}
