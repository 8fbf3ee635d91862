// Package pgserver starts a private, throwaway PostgreSQL server for a test
// that must crash, restart or stop its database, which it may not do to the
// shared server the other tests use (see internal/pgtest). It follows
// scripts/with-postgres.sh: PostgreSQL's own binaries, a fresh data
// directory, a free port on 127.0.0.1, and, when the test runs as root, the
// server run as the postgres user (PostgreSQL refuses to run as root). The
// server is stopped and its directory deleted when the test ends.
//
// A test that cannot start one fails with a message saying what is
// missing; it never skips.
package pgserver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Server is a private PostgreSQL server.
type Server struct {
	t      testing.TB
	bindir string
	dir    string // holds data/, the server's log and its socket
	port   int
	runas  []string // the command prefix that runs a binary as the server's owner
}

// Stop modes, as pg_ctl's -m takes them.
const (
	// Immediate aborts every server process without a checkpoint: what a
	// crash of the server does; the next start runs crash recovery.
	Immediate = "immediate"
	// Fast disconnects the clients and shuts down cleanly.
	Fast = "fast"
)

// ctlTimeout bounds one initdb or pg_ctl run.
const ctlTimeout = 90 * time.Second

// New starts a server for t and stops and deletes it when t ends.
func New(t testing.TB) *Server {
	t.Helper()
	bindir, err := findBindir()
	if err != nil {
		t.Fatalf("pgserver: %v", err)
	}
	s := &Server{t: t, bindir: bindir}
	owner, err := s.owner()
	if err != nil {
		t.Fatalf("pgserver: %v", err)
	}
	if s.dir, err = os.MkdirTemp("", "cairn-pgserver-"); err != nil {
		t.Fatalf("pgserver: %v", err)
	}
	t.Cleanup(s.cleanup)
	if err := s.prepareDir(owner); err != nil {
		t.Fatalf("pgserver: %v", err)
	}
	if out, err := s.run("initdb", "-D", s.data(), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync"); err != nil {
		t.Fatalf("pgserver: initdb failed: %v\n%s", err, out)
	}
	// Another process may take the port between our probe and the
	// server's bind: try a few.
	for attempt := 1; ; attempt++ {
		if s.port, err = freePort(); err != nil {
			t.Fatalf("pgserver: %v", err)
		}
		if err = s.Start(); err == nil {
			return s
		}
		if attempt == 3 {
			t.Fatalf("pgserver: %v\n%s", err, s.LogTail(30))
		}
	}
}

// URL is a connection URL for the server's superuser.
func (s *Server) URL() string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", s.port)
}

// Start starts the stopped server on its port, waiting until it accepts
// connections (after crash recovery, if it was stopped Immediate).
func (s *Server) Start() error {
	if out, err := s.run("pg_ctl", "start", "-D", s.data(), "-l", s.logFile(), "-w", "-t", "60", "-o", s.options()); err != nil {
		return fmt.Errorf("pg_ctl start: %v: %s", err, out)
	}
	return nil
}

// Stop stops the server in mode (Immediate or Fast), waiting until it has.
func (s *Server) Stop(mode string) error {
	if out, err := s.run("pg_ctl", "stop", "-D", s.data(), "-m", mode, "-w", "-t", "60"); err != nil {
		return fmt.Errorf("pg_ctl stop -m %s: %v: %s", mode, err, out)
	}
	return nil
}

// Restart stops the server in mode (Immediate or Fast) and starts it
// again, as `pg_ctl restart -m mode` does, waiting until it accepts
// connections.
func (s *Server) Restart(mode string) error {
	if out, err := s.run("pg_ctl", "restart", "-D", s.data(), "-m", mode, "-l", s.logFile(), "-w", "-t", "60", "-o", s.options()); err != nil {
		return fmt.Errorf("pg_ctl restart -m %s: %v: %s", mode, err, out)
	}
	return nil
}

// LogTail returns the last n lines of the server's log, for a failing
// test's message.
func (s *Server) LogTail(n int) string {
	b, err := os.ReadFile(s.logFile())
	if err != nil {
		return "(no server log: " + err.Error() + ")"
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

func (s *Server) data() string    { return filepath.Join(s.dir, "data") }
func (s *Server) logFile() string { return filepath.Join(s.dir, "log") }

// options are the server's settings. fsync and full page writes are off:
// they guard against a crash of the machine, which a test does not cause,
// and cost time. synchronous_commit stays on: with it off, an Immediate
// stop loses transactions the server had already reported committed, and
// the tests that crash the server check that nothing acknowledged is lost.
func (s *Server) options() string {
	return fmt.Sprintf("-c listen_addresses=127.0.0.1 -p %d -k %s -c max_connections=300 -c fsync=off -c full_page_writes=off", s.port, s.dir)
}

// owner decides who runs the server: the current user, or when that is
// root (which PostgreSQL refuses) the postgres user, else nobody.
func (s *Server) owner() (*user.User, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	for _, name := range []string{"postgres", "nobody"} {
		u, err := user.Lookup(name)
		if err != nil {
			continue
		}
		runuser, err := exec.LookPath("runuser")
		if err != nil {
			return nil, errors.New("running as root, and runuser (util-linux) is not installed to run PostgreSQL as another user")
		}
		s.runas = []string{runuser, "-u", name, "--"}
		return u, nil
	}
	return nil, errors.New("running as root, and there is neither a postgres nor a nobody user to run PostgreSQL as")
}

// prepareDir lets the server's owner use the directory.
func (s *Server) prepareDir(owner *user.User) error {
	if err := os.Chmod(s.dir, 0o755); err != nil {
		return err
	}
	if owner == nil {
		return nil
	}
	uid, err := strconv.Atoi(owner.Uid)
	if err != nil {
		return fmt.Errorf("user %s has a non-numeric uid %q", owner.Username, owner.Uid)
	}
	gid, err := strconv.Atoi(owner.Gid)
	if err != nil {
		return fmt.Errorf("user %s has a non-numeric gid %q", owner.Username, owner.Gid)
	}
	return os.Chown(s.dir, uid, gid)
}

// run runs one of the server's binaries as the server's owner, in the
// server's directory (the owner may not be allowed into the test's).
func (s *Server) run(name string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), ctlTimeout)
	defer cancel()
	argv := append(slices.Clone(s.runas), filepath.Join(s.bindir, name))
	argv = append(argv, args...)
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Dir = s.dir
	return cmd.CombinedOutput()
}

func (s *Server) cleanup() {
	if _, err := os.Stat(filepath.Join(s.data(), "postmaster.pid")); err == nil {
		if err := s.Stop(Immediate); err != nil {
			s.t.Logf("pgserver: %v", err)
		}
	}
	if s.t.Failed() && s.port != 0 {
		s.t.Logf("pgserver: the end of the server's log:\n%s", s.LogTail(40))
	}
	if err := os.RemoveAll(s.dir); err != nil {
		s.t.Logf("pgserver: removing %s: %v", s.dir, err)
	}
}

// findBindir finds PostgreSQL's server binaries: Debian's newest
// /usr/lib/postgresql/N/bin, else initdb on the PATH.
func findBindir() (string, error) {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	version := func(dir string) int {
		n, _ := strconv.Atoi(filepath.Base(filepath.Dir(dir)))
		return n
	}
	slices.SortFunc(dirs, func(a, b string) int { return version(b) - version(a) })
	for _, d := range dirs {
		if isExecutable(filepath.Join(d, "initdb")) && isExecutable(filepath.Join(d, "pg_ctl")) {
			return d, nil
		}
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		d := filepath.Dir(p)
		if isExecutable(filepath.Join(d, "pg_ctl")) {
			return d, nil
		}
	}
	return "", errors.New("PostgreSQL's server binaries (initdb, pg_ctl) are not installed: " +
		"none in /usr/lib/postgresql/*/bin nor on the PATH. This test starts, crashes and restarts a " +
		"private server of its own; install them (on Debian: apt-get install postgresql, with " +
		"create_main_cluster = false in /etc/postgresql-common/createcluster.conf to create no cluster)")
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("finding a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}
