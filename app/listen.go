package app

import (
	"errors"
	"fmt"
	"net"
	"syscall"
)

// ListenError is a failure to open the HTTP listener. Its message names
// the address and the --addr flag that chooses another, the flag of the
// sample's and generated services' serve commands.
type ListenError struct {
	Addr string
	Err  error
}

func (e *ListenError) Error() string {
	if errors.Is(e.Err, syscall.EADDRINUSE) {
		return fmt.Sprintf("cannot listen on %s: another process is already listening there; "+
			"stop it, or choose a free address with --addr HOST:PORT (for example --addr 127.0.0.1:0 for any free port)", e.Addr)
	}
	return fmt.Sprintf("cannot listen on %s: %v; choose another address with --addr HOST:PORT", e.Addr, e.Err)
}

func (e *ListenError) Unwrap() error { return e.Err }

// Listen opens the HTTP listener on addr. Open it before New and hand it to
// RunWith (RunOptions.Listener): a start on a busy address then fails at
// once, before any connection to the database, any migration or any
// request, and whoever holds the address is left alone.
func Listen(addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, &ListenError{Addr: addr, Err: err}
	}
	return ln, nil
}
