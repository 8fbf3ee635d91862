// Package pgerr classifies PostgreSQL errors. It holds the one rule the
// server (its 503s), the metrics (their "unavailable" reason) and anything
// else that must tell "the database cannot be used right now; the same
// request will work later" from every other failure.
package pgerr

import (
	"context"
	"errors"
	"io"
	"net"
	"syscall"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/puddle/v2"
)

// Transient reports whether err means PostgreSQL could not be used for a
// reason that passes on its own, so that the same request, sent again a
// little later, can succeed:
//
//   - the connection could not be made, was reset, refused, cut (pgx turns
//     a connection that ends mid-message into io.ErrUnexpectedEOF) or had
//     already been closed by the driver after such a failure;
//   - the pool was closed (the process is shutting down);
//   - the server said so: SQLSTATE class 08 (connection exception), class
//     53 (insufficient resources: too many clients, out of memory or disk),
//     57P01-57P03 (administrator or crash shutdown, cannot connect now),
//     40001 and 40P01 (serialization failure, deadlock: the transaction
//     was rolled back and a new attempt usually goes through).
//
// Any other server error is a definitive answer and not transient, even
// when it arrives while connecting (a wrong password, a missing
// database). Neither is the caller's own context ending
// (context.Canceled, context.DeadlineExceeded): pgx reports such a
// failure as safe to retry, but it is about the caller's time, not the
// database's health, and callers treat it apart.
//
// Transient sees through wrapping (fmt.Errorf with %w, errors.Join), and
// only through it: an error flattened into a string is not recognised.
func Transient(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return TransientCode(pe.Code)
	}
	return brokenConnection(err)
}

// TransientCode reports whether a SQLSTATE names a transient condition
// (see Transient).
func TransientCode(code string) bool {
	if len(code) != 5 {
		return false
	}
	switch code[:2] {
	case "08", "53":
		return true
	}
	switch code {
	case "57P01", "57P02", "57P03", "40001", "40P01":
		return true
	}
	return false
}

// brokenConnection tells failures of the connection itself, which carry no
// SQLSTATE.
func brokenConnection(err error) bool {
	var connect *pgconn.ConnectError
	var op *net.OpError
	switch {
	case errors.As(err, &connect), errors.As(err, &op):
		return true
	case pgconn.SafeToRetry(err):
		// Failed before anything reached the server (a busy or closed
		// connection, a write that could not start).
		return true
	case errors.Is(err, pgconn.ErrConnClosed), errors.Is(err, net.ErrClosed), errors.Is(err, puddle.ErrClosedPool):
		return true
	case errors.Is(err, io.ErrUnexpectedEOF):
		// pgx turns io.EOF on its connection into io.ErrUnexpectedEOF, so
		// a bare io.EOF is not the database's and is left out.
		return true
	}
	for _, errno := range []syscall.Errno{syscall.ECONNRESET, syscall.ECONNREFUSED, syscall.ECONNABORTED, syscall.EPIPE, syscall.ETIMEDOUT} {
		if errors.Is(err, errno) {
			return true
		}
	}
	return false
}
