package app

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/cairn-es/cairn/server"
)

func TestParseAPIKeys(t *testing.T) {
	keys, err := ParseAPIKeys("key-one-0123456789:read,write; key:with:colons-0123:read operator\n# a comment\n\n")
	require.NoError(t, err)
	require.Equal(t, map[string][]string{
		"key-one-0123456789":   {"read", "write"},
		"key:with:colons-0123": {"read", "operator"},
	}, keys)
	for _, bad := range []string{"", "# only a comment", "no-scopes-0123456789", "k-0123456789abcdef:", "dup-0123456789abcd:read;dup-0123456789abcd:write"} {
		_, err := ParseAPIKeys(bad)
		require.Error(t, err, bad)
		require.NotContains(t, err.Error(), "0123456789abcd", "an error must not give a key away")
	}
}

func TestSecuritySettings(t *testing.T) {
	dir := t.TempDir()
	file := func(name, content string) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, []byte(content), 0o600))
		return p
	}
	env := map[string]string{
		EnvAPIKeysFile: file("keys", "env-key-0123456789:read\n"),
		EnvJWTIssuer:   "https://issuer.test",
		EnvJWTSecret:   "an HS256 secret from the environment!",
	}
	fromEnv := SecurityFromEnv(func(k string) string { return env[k] })
	// A flag's file hides the environment's value of the same setting.
	sec := Security{JWTSecretFile: file("secret", "an HS256 secret from a flag's file!!\n")}.Or(fromEnv)
	auth, err := sec.Auth()
	require.NoError(t, err)
	require.Equal(t, "an HS256 secret from a flag's file!!", string(auth.JWTSecret))
	require.Equal(t, map[string][]string{"env-key-0123456789": {"read"}}, auth.APIKeys)
	require.Equal(t, "https://issuer.test", auth.JWTIssuer)

	var cfg server.Config
	require.NoError(t, applyAuth(&cfg, sec))
	require.True(t, cfg.Auth.Enabled())
	require.Equal(t, DefaultMetricsScope, cfg.MetricsScope, "/metrics needs a scope with authentication on")
	open := server.Config{}
	require.NoError(t, applyAuth(&open, Security{APIKeys: "k-0123456789abcdef:read", MetricsScope: "-"}))
	require.Empty(t, open.MetricsScope)
	off := server.Config{}
	require.NoError(t, applyAuth(&off, Security{}))
	require.False(t, off.Auth.Enabled())
	require.Empty(t, off.MetricsScope)
	both := server.Config{Auth: server.AuthConfig{APIKeys: map[string][]string{"code-key-0123456789": {"read"}}}}
	require.ErrorContains(t, applyAuth(&both, sec), "both")

	for name, bad := range map[string]Security{
		"value and file":      {JWTSecret: "x", JWTSecretFile: "y"},
		"missing file":        {JWTSecretFile: filepath.Join(dir, "absent")},
		"empty file":          {APIKeysFile: file("empty", "\n")},
		"short secret":        {JWTSecret: "short"},
		"bad keys":            {APIKeys: "nocolon"},
		"bad PEM":             {JWTPublicKeyFile: file("pem", "not PEM")},
		"bad JWKS":            {JWKSFile: file("jwks", `{"keys":[]}`)},
		"bad leeway":          {JWTSecret: "an HS256 secret from the environment!", JWTLeeway: "soon"},
		"issuer without keys": {JWTIssuer: "https://issuer.test"},
	} {
		_, err := bad.Auth()
		require.Error(t, err, name)
	}
	_, err = cursorKeys(t.Context(), nil, Config{}, Security{CursorKey: "too short"})
	require.ErrorContains(t, err, EnvCursorKey)
	_, err = cursorKeys(t.Context(), nil, Config{}, Security{CursorKeyPrevious: "a previous key, long enough to use"})
	require.ErrorContains(t, err, "without "+EnvCursorKey)
	keys, err := cursorKeys(t.Context(), nil, Config{}, Security{CursorKeyFile: file("ck", "a cursor key of thirty-two bytes!\n")})
	require.NoError(t, err)
	require.NotNil(t, keys)
}
