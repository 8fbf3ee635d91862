//go:build unix

package scaffold

import (
	"bytes"
	"errors"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// checkMakeRun runs the service's make run on a free address with a
// private throwaway PostgreSQL (CAIRN_PRIVATE_POSTGRES=1, as on a machine
// where no server answers), creates an invoice through a generated route
// and reads it back, then interrupts it as Ctrl-C does and checks that the
// throwaway server's directory is gone.
func checkMakeRun(t *testing.T, svc string) {
	t.Helper()
	addr := freeAddr(t)
	cmd := exec.Command("make", "run", "ADDR="+addr)
	cmd.Dir = svc
	cmd.Env = append(goEnv(), "CAIRN_PRIVATE_POSTGRES=1")
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	// A process group of its own, so that the interrupt reaches make, the
	// script, go run and the server, as Ctrl-C in a terminal does.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("make run: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	defer func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}()

	base := "http://" + addr
	waitReady(t, base, done, out)
	res := post(t, base+"/invoices", `{"invoice_id": "invoice-run", "name": "Run"}`)
	if res.StatusCode != http.StatusAccepted {
		t.Fatalf("POST /invoices: status %d, want 202\n%s", res.StatusCode, out)
	}
	req, _ := http.NewRequest(http.MethodGet, base+"/invoices/invoice-run", nil)
	req.Header.Set("X-Cairn-Min-Position", res.Header.Get("X-Cairn-Position"))
	got, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET /invoices/invoice-run: %v", err)
	}
	got.Body.Close()
	if got.StatusCode != http.StatusOK {
		t.Fatalf("GET /invoices/invoice-run: status %d, want 200\n%s", got.StatusCode, out)
	}

	if err := syscall.Kill(-cmd.Process.Pid, syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		t.Fatalf("make run did not stop within 60 s of an interrupt:\n%s", out)
	}
	m := regexp.MustCompile(`starting a private PostgreSQL .* in (/tmp/cairn-pg\.\S+)`).FindStringSubmatch(out.String())
	if m == nil {
		t.Fatalf("make run with CAIRN_PRIVATE_POSTGRES=1 did not start a private PostgreSQL:\n%s", out)
	}
	if _, err := os.Stat(m[1]); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the throwaway server's directory %s is still there after make run stopped (%v)", m[1], err)
	}
}

// waitReady polls /readyz until the service answers 200. make run builds
// the service first, so this may take a while; if it ends first, the wait
// stops there.
func waitReady(t *testing.T, base string, done <-chan error, out *syncBuffer) {
	t.Helper()
	var ended bool
	var exit error
	require.Eventually(t, func() bool {
		select {
		case exit = <-done:
			ended = true
			return true
		default:
		}
		res, err := http.Get(base + "/readyz")
		if err != nil {
			return false
		}
		res.Body.Close()
		return res.StatusCode == http.StatusOK
	}, 3*time.Minute, 200*time.Millisecond, "make run did not serve %s/readyz within 3 minutes:\n%s", base, out)
	if ended {
		t.Fatalf("make run ended before serving: %v\n%s", exit, out)
	}
}

func post(t *testing.T, url, body string) *http.Response {
	t.Helper()
	res, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	res.Body.Close()
	return res
}

// freeAddr is a local address nothing listens on now.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// syncBuffer is an output buffer the command writes while the test reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
