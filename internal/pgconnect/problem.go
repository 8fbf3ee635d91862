package pgconnect

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"strings"
	"syscall"

	"github.com/jackc/pgx/v5/pgconn"
)

// Problem is what kept a connection from being made.
type Problem int

const (
	// Other is a failure none of the others names; the message carries
	// the driver's own words.
	Other Problem = iota
	// BadURL: the URL does not parse, or is not a PostgreSQL URL.
	BadURL
	// Refused: nothing listens at the address.
	Refused
	// UnknownHost: the host name does not resolve.
	UnknownHost
	// Timeout: no answer in time.
	Timeout
	// TLS: the TLS handshake failed or the server does not offer TLS.
	TLS
	// Auth: the server refused the login (SQLSTATE 28P01, 28000).
	Auth
	// NoDatabase: the database does not exist (SQLSTATE 3D000).
	NoDatabase
	// TooManyClients: the server, the database or the role has no
	// connection slot left (SQLSTATE 53300).
	TooManyClients
)

var problemNames = [...]string{"other", "bad URL", "refused", "unknown host", "timeout", "TLS", "authentication failed", "no such database", "too many clients"}

func (p Problem) String() string {
	if p < 0 || int(p) >= len(problemNames) {
		return fmt.Sprintf("Problem(%d)", int(p))
	}
	return problemNames[p]
}

// Classify names the problem behind a connection failure: by the
// server's SQLSTATE when it answered, else by the error types of pgx, the
// net package and crypto/tls. Only pgx's "server refused TLS connection",
// which has no type, is recognised by its text.
func Classify(err error) Problem {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return classifyCode(pe.Code)
	}
	var parse *pgconn.ParseConfigError
	var dns *net.DNSError
	switch {
	case errors.As(err, &parse):
		return BadURL
	case errors.As(err, &dns):
		return UnknownHost
	case errors.Is(err, syscall.ECONNREFUSED):
		return Refused
	case isTLS(err):
		return TLS
	case isTimeout(err):
		return Timeout
	}
	return Other
}

func classifyCode(code string) Problem {
	switch code {
	case "28P01", "28000": // invalid_password, invalid_authorization_specification
		return Auth
	case "3D000": // invalid_catalog_name
		return NoDatabase
	case "53300": // too_many_connections
		return TooManyClients
	}
	return Other
}

func isTLS(err error) bool {
	var verify *tls.CertificateVerificationError
	var record tls.RecordHeaderError
	var alert tls.AlertError
	var authority x509.UnknownAuthorityError
	var hostname x509.HostnameError
	var invalid x509.CertificateInvalidError
	return errors.As(err, &verify) || errors.As(err, &record) || errors.As(err, &alert) ||
		errors.As(err, &authority) || errors.As(err, &hostname) || errors.As(err, &invalid) ||
		strings.Contains(err.Error(), "server refused TLS connection")
}

func isTimeout(err error) bool {
	var ne net.Error
	return pgconn.Timeout(err) || errors.Is(err, context.DeadlineExceeded) ||
		(errors.As(err, &ne) && ne.Timeout())
}

// Error is a failure to connect, diagnosed. It matches ErrUnreachable and
// unwraps to the driver's error.
type Error struct {
	Problem Problem
	// Target is the URL used and where it came from.
	Target Target
	// Addr, User and Database are the URL's, when it parsed.
	Addr, User, Database string
	// Err is the driver's error.
	Err error
}

func (e *Error) Unwrap() error { return e.Err }

// Is makes errors.Is(err, ErrUnreachable) hold for every *Error, as it did
// when every connection failure was reported as ErrUnreachable.
func (e *Error) Is(target error) bool { return target == ErrUnreachable }

// Error is three lines: what went wrong, the URL and its origin, and what
// to do. No line shows the password, even where the driver's words quote
// the URL.
func (e *Error) Error() string {
	msg := fmt.Sprintf("%s\n  database URL: %s (from %s)\n  what to do: %s", e.headline(), e.Target.Masked(), e.Target.From, e.advice())
	return scrub(msg, e.Target.URL)
}

// privateHint is how this repository's and generated services' Makefiles
// give a private throwaway server (scripts/with-postgres.sh).
const privateHint = "use a private throwaway PostgreSQL: run the make target with CAIRN_PRIVATE_POSTGRES=1 (`CAIRN_PRIVATE_POSTGRES=1 make demo` here, `make test` or `make run` in a generated service)"

// startHint is what to do when no server answers.
const startHint = "point --database-url or DATABASE_URL at a server that runs; " +
	"the Makefile targets that need one (`make demo`, `make test`, a generated service's `make run`) start a private throwaway PostgreSQL when nothing answers on 127.0.0.1:5432."

func (e *Error) headline() string {
	at := e.Addr
	if at == "" {
		at = "the URL's address"
	}
	switch e.Problem {
	case BadURL:
		return fmt.Sprintf("%v: the database URL is not a usable PostgreSQL URL: %v", ErrUnreachable, e.Err)
	case Refused:
		return fmt.Sprintf("%v at %s: nothing is listening there (connection refused)", ErrUnreachable, at)
	case UnknownHost:
		return fmt.Sprintf("%v at %s: the host name does not resolve", ErrUnreachable, at)
	case Timeout:
		return fmt.Sprintf("%v at %s: no answer in time (timeout)", ErrUnreachable, at)
	case TLS:
		return fmt.Sprintf("%v at %s: the TLS handshake failed: %v", ErrUnreachable, at, e.Err)
	}
	var pe *pgconn.PgError
	if errors.As(e.Err, &pe) {
		return e.serverRefusal(at, pe)
	}
	return fmt.Sprintf("%v at %s: %v", ErrUnreachable, at, e.Err)
}

// serverRefusal is the headline of a server that answered with an error.
func (e *Error) serverRefusal(at string, pe *pgconn.PgError) string {
	var what string
	switch e.Problem {
	case Auth:
		what = fmt.Sprintf("refused the login of user %q (authentication failed)", e.User)
	case NoDatabase:
		what = fmt.Sprintf("has no database %q", e.Database)
	case TooManyClients:
		what = "has no connection slot left (too many clients)"
	default:
		what = "refused the connection"
	}
	return fmt.Sprintf("PostgreSQL at %s %s: %s (SQLSTATE %s)", at, what, pe.Message, pe.Code)
}

func (e *Error) advice() string {
	switch e.Problem {
	case BadURL:
		return "write it as postgres://USER:PASSWORD@HOST:PORT/DATABASE?sslmode=disable, in --database-url or DATABASE_URL."
	case Refused:
		return "start PostgreSQL there, or " + startHint
	case UnknownHost:
		return "check the host name in the URL, or " + startHint
	case Timeout:
		return "check that the host and port are PostgreSQL's and that no firewall drops the connection, or " + startHint
	case TLS:
		return "for a local server without TLS add sslmode=disable to the URL; otherwise check sslmode, sslrootcert and the server's certificate."
	case Auth:
		return "put a user and password the server accepts in the URL (postgres://USER:PASSWORD@HOST:PORT/DATABASE), or " + privateHint + "."
	case NoDatabase:
		return fmt.Sprintf("create it (createdb %s, as a user allowed to), or name an existing database in the URL.", e.Database)
	case TooManyClients:
		return "stop idle clients or raise the server's max_connections (or the role's or database's CONNECTION LIMIT), " +
			"lower this process's pool with pool_max_conns in the URL, or " + privateHint + "."
	}
	return "check the URL and the server's log; " + privateHint + "."
}
