package app_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cairn-es/cairn/app"
	"github.com/cairn-es/cairn/cli"
	"github.com/cairn-es/cairn/internal/pgtest"
	"github.com/cairn-es/cairn/server"
)

func TestListenOnABusyAddressNamesItAndTheFlag(t *testing.T) {
	held, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer held.Close()
	addr := held.Addr().String()

	ln, err := app.Listen(addr)
	require.Nil(t, ln)
	require.ErrorIs(t, err, syscall.EADDRINUSE)
	var le *app.ListenError
	require.ErrorAs(t, err, &le)
	require.Equal(t, addr, le.Addr)
	require.Contains(t, err.Error(), "cannot listen on "+addr+": another process is already listening there")
	require.Contains(t, err.Error(), "--addr HOST:PORT")
}

// The server serves on the listener it is given, and Run closes it.
func TestRunServesOnTheGivenListener(t *testing.T) {
	pool := pgtest.Pool(t, 10)
	a, err := app.New(context.Background(), app.Config{Pool: pool, Schema: pgtest.Schema(t, pool), Logger: quietLog,
		Server: server.Config{Addr: "127.0.0.1:1"}})
	require.NoError(t, err)
	defer a.Close()
	ln, err := app.Listen("127.0.0.1:0")
	require.NoError(t, err)
	base := "http://" + ln.Addr().String()

	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.RunWith(ctx, app.RunOptions{NoProjections: true, NoSagas: true, Listener: ln}) }()
	resp, err := http.Get(base + server.HealthPath)
	require.NoError(t, err)
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)

	stop()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
	_, err = net.DialTimeout("tcp", ln.Addr().String(), time.Second)
	require.Error(t, err, "Run closed the listener")
}

// New's connection errors say what is wrong and where the URL came from,
// and still match the sentinel.
func TestNewDiagnosesTheDatabaseURL(t *testing.T) {
	ctx := context.Background()
	_, err := app.New(ctx, app.Config{DatabaseURL: "mysql://root:hunter22@db/shop", DatabaseURLFrom: "--database-url", Logger: quietLog})
	require.ErrorIs(t, err, app.ErrUnreachable)
	require.ErrorIs(t, err, cli.ErrUnreachable)
	require.Contains(t, err.Error(), "its scheme is mysql://")
	require.Contains(t, err.Error(), "mysql://root:xxxxx@db/shop (from --database-url)")
	require.NotContains(t, err.Error(), "hunter22")

	u, err := url.Parse(pgtest.URL())
	require.NoError(t, err)
	name := fmt.Sprintf("no_such_db_%x", pgtest.Suffix())
	u.Path = "/" + name
	t.Setenv("DATABASE_URL", u.String())
	_, err = app.New(ctx, app.Config{Logger: quietLog})
	require.ErrorIs(t, err, app.ErrUnreachable)
	require.Contains(t, err.Error(), fmt.Sprintf("has no database %q", name))
	require.Contains(t, err.Error(), "(from $DATABASE_URL)")
	require.False(t, errors.Is(err, context.DeadlineExceeded))
}
