package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/cairn-es/cairn/app"
	"github.com/cairn-es/cairn/examples/orders"
	"github.com/cairn-es/cairn/examples/orders/fulfilment"
	"github.com/cairn-es/cairn/examples/orders/payment"
	"github.com/cairn-es/cairn/internal/pgconnect"
	"github.com/cairn-es/cairn/server"
)

// systemFlags are the flags serve and demo share.
type systemFlags struct {
	addr string
	// store is --store: where the event log lives (see storeFlagHelp).
	store                       string
	failureRate                 float64
	latency, jitter, payTimeout time.Duration
	noProjections, noSagas      bool
	// broker is --broker: the NATS server through which the order system
	// reaches shipping, run as a service of its own (`orders shipping`).
	broker string
	// security is what serve's flags set; the CAIRN_* environment fills
	// in the rest (see package app). The demo, which drives its own
	// server without tokens, ignores both.
	security app.Security
	noEnv    bool
}

// registerSecurity adds serve's authentication and cursor-key flags. Only
// files are taken for secrets: a command line is visible to every user of
// the machine (ps), a file's mode is not.
func (f *systemFlags) registerSecurity(cmd *cobra.Command) {
	fl := cmd.Flags()
	s := &f.security
	fl.StringVar(&s.APIKeysFile, "api-keys-file", "", "file of API keys, one \"key:scope,scope\" a line (or $"+app.EnvAPIKeys+"); scope operator sees every customer's orders")
	fl.StringVar(&s.JWTSecretFile, "jwt-secret-file", "", "file holding the HS256 secret of bearer JWTs, 32+ bytes (or $"+app.EnvJWTSecret+")")
	fl.StringVar(&s.JWTPublicKeyFile, "jwt-public-key-file", "", "PEM public key (RSA, ECDSA) verifying bearer JWTs (or $"+app.EnvJWTPublicKeyFile+")")
	fl.StringVar(&s.JWKSFile, "jwks-file", "", "JSON Web Key Set verifying bearer JWTs by their kid (or $"+app.EnvJWKSFile+")")
	fl.StringVar(&s.JWTIssuer, "jwt-issuer", "", "required iss claim of JWTs (or $"+app.EnvJWTIssuer+")")
	fl.StringVar(&s.JWTAudience, "jwt-audience", "", "required aud claim of JWTs (or $"+app.EnvJWTAudience+")")
	fl.StringVar(&s.MetricsScope, "metrics-scope", "", "scope /metrics requires with authentication on (default metrics; - leaves it open)")
	fl.StringVar(&s.CursorKeyFile, "cursor-key-file", "", "file holding the key signing page cursors, 32+ bytes (default: the key stored in the database)")
	fl.StringVar(&s.CursorKeyPreviousFile, "cursor-key-previous-file", "", "during a key rotation, file holding the previous cursor key, still accepted")
}

// EnvStore names the environment variable that chooses the event log
// when --store is not given.
const EnvStore = "CAIRN_STORE"

const storeFlagHelp = "where the event log lives: postgres (the store in --database-url's database) " +
	"or a KurrentDB connection string such as kurrentdb://127.0.0.1:2113?tls=false (or $" + EnvStore + "; default postgres). " +
	"Read models, sagas and the app's tables stay in --database-url's PostgreSQL either way"

func (f *systemFlags) register(cmd *cobra.Command, failureRate float64, latency, jitter, payTimeout time.Duration) {
	fl := cmd.Flags()
	fl.StringVar(&f.addr, "addr", server.DefaultAddr, "listen address of the HTTP API (127.0.0.1:0: any free port; :8080: every interface)")
	fl.StringVar(&f.store, "store", "", storeFlagHelp)
	fl.Float64Var(&f.failureRate, "payment-failure-rate", failureRate, "share of payments the simulated gateway declines, 0 to 1")
	fl.DurationVar(&f.latency, "payment-latency", latency, "how long the simulated gateway takes to answer")
	fl.DurationVar(&f.jitter, "payment-jitter", jitter, "random extra time the simulated gateway takes, up to this")
	fl.DurationVar(&f.payTimeout, "payment-timeout", payTimeout, "how long the saga waits for a payment before cancelling the order")
	fl.StringVar(&f.broker, "broker", "", brokerFlagHelp)
}

const brokerFlagHelp = "NATS server (nats://127.0.0.1:4222, with JetStream) through which shipping is reached as a " +
	"service of its own: run `orders shipping --broker` beside it. Default: shipping runs in this process"

func (f *systemFlags) gateway() *payment.SimulatedGateway {
	return &payment.SimulatedGateway{FailureRate: f.failureRate, Latency: f.latency, Jitter: f.jitter, Seed: uint64(time.Now().UnixNano())}
}

// storeChoice is the event log the flags and the environment choose.
type storeChoice struct {
	url  string // "" for the PostgreSQL store
	from string // "--store" or "$CAIRN_STORE", for messages
}

// chooseStore reads --store, then $CAIRN_STORE; a value that is neither
// postgres nor a KurrentDB connection string is an error naming its source.
func (f *systemFlags) chooseStore(getenv func(string) string) (storeChoice, error) {
	c := storeChoice{url: f.store, from: "--store"}
	if c.url == "" {
		c = storeChoice{url: getenv(EnvStore), from: "$" + EnvStore}
	}
	switch {
	case c.url == "" || c.url == "postgres" || c.url == "postgresql":
		return storeChoice{}, nil
	case app.IsKurrentDBURL(c.url):
		return c, nil
	}
	return storeChoice{}, fmt.Errorf("%s %q: want postgres or a KurrentDB connection string such as kurrentdb://127.0.0.1:2113?tls=false", c.from, c.url)
}

// system is what start assembled; close releases all of it.
type system struct {
	app   *app.App
	ln    net.Listener
	store storeChoice
	// closeStore closes the KurrentDB store and client (a no-op for the
	// PostgreSQL store, which the App closes).
	closeStore func()
}

func (s *system) close() {
	s.app.Close()
	s.closeStore()
}

// start binds the HTTP listener, then assembles the system on the command
// line's database and schema, with the event log --store names. Binding
// comes first: on a busy address the command fails at once, before it
// connects to a database or a KurrentDB, migrates or sends a request
// anywhere. The caller passes the listener to RunWith and closes the
// system.
func (f *systemFlags) start(ctx context.Context, cmd *cobra.Command, gw payment.Gateway, logger *slog.Logger) (*system, error) {
	if f.failureRate < 0 || f.failureRate > 1 {
		return nil, fmt.Errorf("--payment-failure-rate must be between 0 and 1")
	}
	if f.payTimeout <= 0 {
		return nil, fmt.Errorf("--payment-timeout must be positive")
	}
	choice, err := f.chooseStore(os.Getenv)
	if err != nil {
		return nil, err
	}
	ln, err := app.Listen(f.addr)
	if err != nil {
		return nil, err
	}
	cfg := app.Config{
		DatabaseURL:     cmd.Flag("database-url").Value.String(),
		DatabaseURLFrom: "--database-url",
		Schema:          cmd.Flag("schema").Value.String(),
		Server:          server.Config{Addr: f.addr},
		Logger:          logger,
		Security:        f.security,
		NoEnv:           f.noEnv,
		Broker:          app.BrokerConfig{URL: f.broker},
	}
	closeStore := func() {}
	if choice.url != "" {
		store, closeKurrent, err := app.OpenKurrentDB(ctx, choice.url, logger)
		if err != nil {
			_ = ln.Close()
			return nil, fmt.Errorf("%w (from %s)", err, choice.from)
		}
		cfg.EventStore, closeStore = store, closeKurrent
	}
	a, err := app.New(ctx, cfg, orders.Modules(orders.Config{Gateway: gw, PaymentTimeout: f.payTimeout, RemoteShipping: f.broker != ""})...)
	if err != nil {
		closeStore()
		_ = ln.Close()
		return nil, err
	}
	return &system{app: a, ln: ln, store: choice, closeStore: closeStore}, nil
}

func serveCmd() *cobra.Command {
	var f systemFlags
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve the HTTP API and run the projections and sagas until SIGINT or SIGTERM",
		Long: "Serve the HTTP API on --addr, applying migrations first, and run the projections,\n" +
			"the fulfilment saga and the reactions in this process (unless --no-projections or\n" +
			"--no-sagas: run them in another process, with `orders projection run`, say).\n" +
			"The event log is --store: the PostgreSQL store in --database-url's database (the default),\n" +
			"or a KurrentDB server (--store kurrentdb://HOST:PORT?tls=false, or $CAIRN_STORE); the\n" +
			"read models, sagas and the app's own tables are in --database-url's PostgreSQL either way.\n" +
			"The address is bound before the database is touched: when another process holds it,\n" +
			"serve exits at once with status 1 and changes nothing.\n\n" +
			"Authentication is off unless API keys or a JWT key are given (flags, or the CAIRN_*\n" +
			"variables of package app): then every route but /healthz and /readyz needs a bearer\n" +
			"token. A token's subject is a customer ID: a customer places, reads and cancels its\n" +
			"own orders only (403 otherwise); the scope operator reads and acts on all of them.\n" +
			"Queries need the scope read, commands write, /metrics metrics.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := server.SignalContext(cmd.Context())
			defer stop()
			logger := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), nil))
			sys, err := f.start(ctx, cmd, f.gateway(), logger)
			if err != nil {
				return err
			}
			defer sys.close()
			logger.Info("orders: serving", "addr", "http://"+sys.ln.Addr().String(), "event_log", sys.store.describe())
			return sys.app.RunWith(ctx, app.RunOptions{NoProjections: f.noProjections, NoSagas: f.noSagas, Listener: sys.ln})
		},
	}
	f.register(cmd, 0, 0, 0, fulfilment.DefaultPaymentTimeout)
	f.registerSecurity(cmd)
	cmd.Flags().BoolVar(&f.noProjections, "no-projections", false, "do not run the projections and reactions here")
	cmd.Flags().BoolVar(&f.noSagas, "no-sagas", false, "do not send the sagas' commands or fire their timeouts here")
	return cmd
}

// describe says where the event log is, for logs and the demo's banner.
func (c storeChoice) describe() string {
	if c.url == "" {
		return "PostgreSQL (--database-url)"
	}
	return "KurrentDB at " + pgconnect.Mask(c.url) + " (from " + c.from + ")"
}
