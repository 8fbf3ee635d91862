package app

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/cairn-es/cairn/query"
	"github.com/cairn-es/cairn/server"
)

// The environment variables New reads (unless Config.NoEnv); see the
// package documentation. A setting given both as NAME and NAME_FILE is an
// error.
const (
	EnvAPIKeys               = "CAIRN_API_KEYS"
	EnvAPIKeysFile           = "CAIRN_API_KEYS_FILE"
	EnvJWTSecret             = "CAIRN_JWT_SECRET"
	EnvJWTSecretFile         = "CAIRN_JWT_SECRET_FILE"
	EnvJWTPublicKeyFile      = "CAIRN_JWT_PUBLIC_KEY_FILE"
	EnvJWKSFile              = "CAIRN_JWKS_FILE"
	EnvJWTIssuer             = "CAIRN_JWT_ISSUER"
	EnvJWTAudience           = "CAIRN_JWT_AUDIENCE"
	EnvJWTLeeway             = "CAIRN_JWT_LEEWAY"
	EnvMetricsScope          = "CAIRN_METRICS_SCOPE"
	EnvCursorKey             = "CAIRN_CURSOR_KEY"
	EnvCursorKeyFile         = "CAIRN_CURSOR_KEY_FILE"
	EnvCursorKeyPrevious     = "CAIRN_CURSOR_KEY_PREVIOUS"
	EnvCursorKeyPreviousFile = "CAIRN_CURSOR_KEY_PREVIOUS_FILE"
)

// DefaultMetricsScope is the scope /metrics requires when authentication
// is on and neither Config.Server.MetricsScope nor Security.MetricsScope
// says otherwise.
const DefaultMetricsScope = "metrics"

// MinCursorKeyLen is the shortest configured cursor key New accepts.
const MinCursorKeyLen = 32

// Security holds the authentication and cursor-key settings as text, the
// way the environment and command-line flags give them. A field left empty
// takes the environment's value (see Config.NoEnv); the fields are those
// of the variables above.
type Security struct {
	// APIKeys are "key:scope,scope" entries separated by ";" or new
	// lines (CAIRN_API_KEYS); APIKeysFile is a file of them, where lines
	// starting with "#" are comments.
	APIKeys, APIKeysFile string
	// JWTSecret (at least 32 bytes) verifies HS256 tokens; JWTSecretFile
	// is a file holding it (a final newline is dropped).
	JWTSecret, JWTSecretFile string
	// JWTPublicKeyFile is a PEM public key (RSA or ECDSA); JWKSFile a JSON
	// Web Key Set whose keys are chosen by the token's kid.
	JWTPublicKeyFile, JWKSFile string
	// JWTIssuer and JWTAudience must match the tokens' iss and aud;
	// JWTLeeway is the clock skew allowed (a duration: "30s").
	JWTIssuer, JWTAudience, JWTLeeway string
	// MetricsScope is the scope /metrics requires with authentication on
	// (DefaultMetricsScope when empty); "-" leaves /metrics open.
	MetricsScope string
	// CursorKey (at least MinCursorKeyLen bytes) signs page cursors, and
	// CursorKeyPrevious, during a rotation, still verifies them; the _File
	// forms name files holding them. Without a key the service uses the
	// keys its migrations stored in the database.
	CursorKey, CursorKeyFile, CursorKeyPrevious, CursorKeyPreviousFile string
}

// SecurityFromEnv reads the settings from the environment through
// getenv (os.Getenv, say).
func SecurityFromEnv(getenv func(string) string) Security {
	return Security{
		APIKeys: getenv(EnvAPIKeys), APIKeysFile: getenv(EnvAPIKeysFile),
		JWTSecret: getenv(EnvJWTSecret), JWTSecretFile: getenv(EnvJWTSecretFile),
		JWTPublicKeyFile: getenv(EnvJWTPublicKeyFile), JWKSFile: getenv(EnvJWKSFile),
		JWTIssuer: getenv(EnvJWTIssuer), JWTAudience: getenv(EnvJWTAudience), JWTLeeway: getenv(EnvJWTLeeway),
		MetricsScope: getenv(EnvMetricsScope),
		CursorKey:    getenv(EnvCursorKey), CursorKeyFile: getenv(EnvCursorKeyFile),
		CursorKeyPrevious: getenv(EnvCursorKeyPrevious), CursorKeyPreviousFile: getenv(EnvCursorKeyPreviousFile),
	}
}

// Or returns s with its empty fields taken from fallback: flags over the
// environment. A value and a _File form are one setting: either in s
// hides both in fallback.
func (s Security) Or(fallback Security) Security {
	pair := func(v, f *string, fv, ff string) {
		if *v == "" && *f == "" {
			*v, *f = fv, ff
		}
	}
	one := func(v *string, fv string) {
		if *v == "" {
			*v = fv
		}
	}
	pair(&s.APIKeys, &s.APIKeysFile, fallback.APIKeys, fallback.APIKeysFile)
	pair(&s.JWTSecret, &s.JWTSecretFile, fallback.JWTSecret, fallback.JWTSecretFile)
	one(&s.JWTPublicKeyFile, fallback.JWTPublicKeyFile)
	one(&s.JWKSFile, fallback.JWKSFile)
	one(&s.JWTIssuer, fallback.JWTIssuer)
	one(&s.JWTAudience, fallback.JWTAudience)
	one(&s.JWTLeeway, fallback.JWTLeeway)
	one(&s.MetricsScope, fallback.MetricsScope)
	pair(&s.CursorKey, &s.CursorKeyFile, fallback.CursorKey, fallback.CursorKeyFile)
	pair(&s.CursorKeyPrevious, &s.CursorKeyPreviousFile, fallback.CursorKeyPrevious, fallback.CursorKeyPreviousFile)
	return s
}

// Auth builds the server's authentication from the settings; the zero
// AuthConfig (authentication off) when none is set. Errors name the
// setting.
func (s Security) Auth() (server.AuthConfig, error) {
	var a server.AuthConfig
	keys, err := secret(s.APIKeys, s.APIKeysFile, EnvAPIKeys)
	if err != nil {
		return a, err
	}
	if keys != "" {
		if a.APIKeys, err = ParseAPIKeys(keys); err != nil {
			return a, fmt.Errorf("app: %s: %w", EnvAPIKeys, err)
		}
	}
	jwtSecret, err := secret(s.JWTSecret, s.JWTSecretFile, EnvJWTSecret)
	if err != nil {
		return a, err
	}
	if jwtSecret != "" {
		if len(jwtSecret) < 32 {
			return a, fmt.Errorf("app: %s: %d bytes, want at least 32", EnvJWTSecret, len(jwtSecret))
		}
		a.JWTSecret = []byte(jwtSecret)
	}
	if a.JWTPublicKey, err = readKeyFile(s.JWTPublicKeyFile, EnvJWTPublicKeyFile, server.ParsePublicKeyPEM); err != nil {
		return a, err
	}
	if s.JWKSFile != "" {
		data, err := os.ReadFile(s.JWKSFile)
		if err != nil {
			return a, fmt.Errorf("app: %s: %w", EnvJWKSFile, err)
		}
		if a.JWTKeys, err = server.ParseJWKS(data); err != nil {
			return a, fmt.Errorf("app: %s %s: %w", EnvJWKSFile, s.JWKSFile, err)
		}
	}
	a.JWTIssuer, a.JWTAudience = s.JWTIssuer, s.JWTAudience
	if s.JWTLeeway != "" {
		if a.JWTLeeway, err = time.ParseDuration(s.JWTLeeway); err != nil || a.JWTLeeway < 0 {
			return a, fmt.Errorf("app: %s: %q is not a duration such as 30s", EnvJWTLeeway, s.JWTLeeway)
		}
	}
	jwt := len(a.JWTSecret) > 0 || a.JWTPublicKey != nil || len(a.JWTKeys) > 0
	if !jwt && (a.JWTIssuer != "" || a.JWTAudience != "" || a.JWTLeeway != 0) {
		return a, fmt.Errorf("app: %s, %s and %s need a JWT key (%s, %s or %s)",
			EnvJWTIssuer, EnvJWTAudience, EnvJWTLeeway, EnvJWTSecret, EnvJWTPublicKeyFile, EnvJWKSFile)
	}
	return a, nil
}

func readKeyFile(path, setting string, parse func([]byte) (crypto.PublicKey, error)) (crypto.PublicKey, error) {
	if path == "" {
		return nil, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("app: %s: %w", setting, err)
	}
	k, err := parse(data)
	if err != nil {
		return nil, fmt.Errorf("app: %s %s: %w", setting, path, err)
	}
	return k, nil
}

// ParseAPIKeys reads "key:scope,scope" entries separated by ";" or new
// lines; blank entries and lines starting with "#" are skipped. A key ends
// at its entry's last ":", so it may hold colons but not ";".
func ParseAPIKeys(s string) (map[string][]string, error) {
	out := map[string][]string{}
	for _, entry := range strings.FieldsFunc(s, func(r rune) bool { return r == ';' || r == '\n' }) {
		entry = strings.TrimSpace(entry)
		if entry == "" || strings.HasPrefix(entry, "#") {
			continue
		}
		i := strings.LastIndexByte(entry, ':')
		if i <= 0 {
			return nil, errors.New(`an entry without scopes: write "key:scope,scope"`)
		}
		key := entry[:i]
		scopes := strings.FieldsFunc(entry[i+1:], func(r rune) bool { return r == ',' || r == ' ' })
		if len(scopes) == 0 {
			return nil, fmt.Errorf("the key ending %q has no scopes", tail(key))
		}
		if _, dup := out[key]; dup {
			return nil, fmt.Errorf("the key ending %q appears twice", tail(key))
		}
		out[key] = scopes
	}
	if len(out) == 0 {
		return nil, errors.New("no keys")
	}
	return out, nil
}

// tail names a secret in an error without giving it away.
func tail(key string) string {
	if len(key) <= 4 {
		return "…"
	}
	return "…" + key[len(key)-4:]
}

// secret is a setting given as a value or as a file holding it (without
// its final newline); both is an error.
func secret(value, file, name string) (string, error) {
	if value != "" && file != "" {
		return "", fmt.Errorf("app: both %s and %s_FILE are set: give one", name, name)
	}
	if file == "" {
		return value, nil
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("app: %s_FILE: %w", name, err)
	}
	v := strings.TrimRight(string(data), "\r\n")
	if v == "" {
		return "", fmt.Errorf("app: %s_FILE %s is empty", name, file)
	}
	return v, nil
}

// applyAuth puts the settings' authentication into the server's
// configuration, and makes /metrics need a scope whenever authentication
// is on.
func applyAuth(cfg *server.Config, sec Security) error {
	auth, err := sec.Auth()
	if err != nil {
		return err
	}
	if auth.Enabled() {
		if cfg.Auth.Enabled() {
			return errors.New("app: authentication is configured both in app.Config.Server.Auth and in the environment or flags: use one")
		}
		// Keep the code's scope names, realm and leeway.
		auth.ReadScope, auth.WriteScope, auth.Realm = cfg.Auth.ReadScope, cfg.Auth.WriteScope, cfg.Auth.Realm
		if auth.JWTLeeway == 0 {
			auth.JWTLeeway = cfg.Auth.JWTLeeway
		}
		cfg.Auth = auth
	}
	if !cfg.Auth.Enabled() || cfg.MetricsScope != "" {
		return nil
	}
	switch sec.MetricsScope {
	case "":
		cfg.MetricsScope = DefaultMetricsScope
	case "-":
	default:
		cfg.MetricsScope = sec.MetricsScope
	}
	return nil
}

// cursorKeys are the keys configured in cfg or the settings, else those
// the migrations stored in the database.
func cursorKeys(ctx context.Context, pool *pgxpool.Pool, cfg Config, sec Security) (*query.CursorKeys, error) {
	current, err := secret(sec.CursorKey, sec.CursorKeyFile, EnvCursorKey)
	if err != nil {
		return nil, err
	}
	previous, err := secret(sec.CursorKeyPrevious, sec.CursorKeyPreviousFile, EnvCursorKeyPrevious)
	if err != nil {
		return nil, err
	}
	if cfg.CursorKeys != nil {
		if current != "" || previous != "" {
			return nil, errors.New("app: cursor keys are configured both in app.Config.CursorKeys and in the environment or flags: use one")
		}
		return cfg.CursorKeys, nil
	}
	if current == "" {
		if previous != "" {
			return nil, fmt.Errorf("app: %s is set without %s", EnvCursorKeyPrevious, EnvCursorKey)
		}
		return storedCursorKeys(ctx, pool, cfg.Schema)
	}
	for name, k := range map[string]string{EnvCursorKey: current, EnvCursorKeyPrevious: previous} {
		if k != "" && len(k) < MinCursorKeyLen {
			return nil, fmt.Errorf("app: %s: %d bytes, want at least %d", name, len(k), MinCursorKeyLen)
		}
	}
	var prev [][]byte
	if previous != "" {
		prev = append(prev, []byte(previous))
	}
	return query.NewCursorKeys([]byte(current), prev...)
}

// storedCursorKeys reads the newest key of the schema's cursor_keys
// table, which signs, and the one before it, which still verifies.
func storedCursorKeys(ctx context.Context, pool *pgxpool.Pool, schema string) (*query.CursorKeys, error) {
	rows, err := pool.Query(ctx, "SELECT key FROM "+pgx.Identifier{schema, "cursor_keys"}.Sanitize()+" ORDER BY generation DESC LIMIT 2")
	if err != nil {
		return nil, fmt.Errorf("app: reading the cursor keys of schema %s (apply the migrations, or set %s): %w", schema, EnvCursorKey, err)
	}
	keys, err := pgx.CollectRows(rows, pgx.RowTo[[]byte])
	if err != nil {
		return nil, fmt.Errorf("app: reading the cursor keys of schema %s: %w", schema, err)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("app: schema %s has no cursor key: insert one (INSERT INTO %s.cursor_keys DEFAULT VALUES) or set %s", schema, schema, EnvCursorKey)
	}
	return query.NewCursorKeys(keys[0], keys[1:]...)
}
