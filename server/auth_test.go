package server_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"net/http"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"

	"github.com/cairn-es/cairn/query"
	"github.com/cairn-es/cairn/server"
)

func TestJWTWithPublicKeys(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	exp := time.Now().Add(time.Hour).Unix()

	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	der, err := x509.MarshalPKIXPublicKey(&ecKey.PublicKey)
	require.NoError(t, err)
	ecPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	ecPub, err := server.ParsePublicKeyPEM(ecPEM)
	require.NoError(t, err)
	ecSrv := e.newServer(t, server.Config{Auth: server.AuthConfig{JWTPublicKey: ecPub, JWTIssuer: "https://issuer.test", JWTAudience: "orders"}}, nil)

	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	rsaSrv := e.newServer(t, server.Config{Auth: server.AuthConfig{JWTPublicKey: &rsaKey.PublicKey}}, nil)

	sign := func(m jwt.SigningMethod, key any, claims jwt.MapClaims) string {
		s, err := jwt.NewWithClaims(m, claims).SignedString(key)
		require.NoError(t, err)
		return s
	}
	call := func(srv *server.Server, tok string) int {
		r := newRequest(t, "GET", "/orders/none", "", hdr{"Authorization": "Bearer " + tok})
		res := (&env{srv: srv}).serve(r)
		return res.status
	}
	good := jwt.MapClaims{"sub": "svc", "scopes": []string{"read"}, "exp": exp, "iss": "https://issuer.test", "aud": "orders"}

	// Authenticated and authorised: the query runs and finds nothing.
	require.Equal(t, http.StatusNotFound, call(ecSrv, sign(jwt.SigningMethodES256, ecKey, good)))
	require.Equal(t, http.StatusNotFound, call(rsaSrv, sign(jwt.SigningMethodRS256, rsaKey, jwt.MapClaims{"scope": "read", "exp": exp})))

	// Wrong issuer or audience.
	require.Equal(t, http.StatusUnauthorized, call(ecSrv, sign(jwt.SigningMethodES256, ecKey, jwt.MapClaims{"scopes": []string{"read"}, "exp": exp, "iss": "https://evil.test", "aud": "orders"})))
	require.Equal(t, http.StatusUnauthorized, call(ecSrv, sign(jwt.SigningMethodES256, ecKey, jwt.MapClaims{"scopes": []string{"read"}, "exp": exp, "iss": "https://issuer.test", "aud": "billing"})))
	// Algorithm confusion: an HMAC token keyed with the public key's PEM.
	require.Equal(t, http.StatusUnauthorized, call(ecSrv, sign(jwt.SigningMethodHS256, ecPEM, good)))
	require.Equal(t, http.StatusUnauthorized, call(rsaSrv, sign(jwt.SigningMethodHS256, x509.MarshalPKCS1PublicKey(&rsaKey.PublicKey), good)))
	// Another key pair.
	other, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	require.Equal(t, http.StatusUnauthorized, call(ecSrv, sign(jwt.SigningMethodES256, other, good)))
	// Valid, without the scope.
	require.Equal(t, http.StatusForbidden, call(rsaSrv, sign(jwt.SigningMethodRS256, rsaKey, jwt.MapClaims{"scope": "write", "exp": exp})))
}

func TestNewRefusesBadConfigurations(t *testing.T) {
	t.Parallel()
	for name, cfg := range map[string]server.Config{
		"short secret":     {Auth: server.AuthConfig{JWTSecret: []byte("short")}},
		"short API key":    {Auth: server.AuthConfig{APIKeys: map[string][]string{"abc": {"read"}}}},
		"unsupported key":  {Auth: server.AuthConfig{JWTPublicKey: "not a key"}},
		"wait over write":  {MaxWait: time.Minute, WriteTimeout: time.Second},
		"relative metrics": {MetricsPath: "metrics"},
	} {
		_, err := server.New(cfg)
		require.Error(t, err, name)
	}
	_, err := server.ParsePublicKeyPEM([]byte("not PEM"))
	require.Error(t, err)

	bare, err := server.New(server.Config{})
	require.NoError(t, err)
	require.Error(t, server.Query[GetOrder, Order](bare, "/x"), "no query bus")
	require.Error(t, server.Command[PlaceOrder](bare, "/x"), "no dispatcher")
}

func TestRouteMountingChecksItsInputs(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	srv := e.newServer(t, server.Config{}, nil)
	type unregistered struct{}
	require.ErrorIs(t, server.Query[unregistered, string](srv, "/u"), query.ErrUnknownQuery)
	noManager, err := server.New(server.Config{QueryBus: e.bus})
	require.NoError(t, err)
	require.Error(t, server.Query[GetOrder, Order](noManager, "/g"), "projections without a manager")
	require.NoError(t, server.Query[OrderEvents, []string](noManager, "/e"), "no projections, no manager needed")
}

func TestMetricsEndpointCanRequireAScope(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	srv := e.newServer(t, server.Config{Auth: testAuth, MetricsScope: "metrics"}, nil)
	serve := func(auth string) int {
		return (&env{srv: srv}).serve(newRequest(t, "GET", "/metrics", "", hdr{"Authorization": auth})).status
	}
	require.Equal(t, http.StatusUnauthorized, serve(""))
	require.Equal(t, http.StatusForbidden, serve("Bearer "+writerKey))
	require.Equal(t, http.StatusOK, serve("Bearer "+token(t, jwt.MapClaims{"scope": "metrics", "exp": time.Now().Add(time.Minute).Unix()})))
	// Health and readiness stay open.
	require.Equal(t, http.StatusOK, (&env{srv: srv}).serve(newRequest(t, "GET", "/healthz", "", hdr{"Authorization": ""})).status)
}
