package server_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"net/http"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"

	"github.com/cairn-es/cairn/server"
)

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func rsaJWK(kid string, k *rsa.PublicKey) map[string]any {
	return map[string]any{"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256", "n": b64(k.N.Bytes()), "e": b64(big.NewInt(int64(k.E)).Bytes())}
}

func ecJWK(kid, crv string, k *ecdsa.PublicKey) map[string]any {
	size := (k.Curve.Params().BitSize + 7) / 8
	x, y := make([]byte, size), make([]byte, size)
	pt, err := k.Bytes() // 0x04 || X || Y
	if err != nil {
		panic(err)
	}
	copy(x, pt[1:1+size])
	copy(y, pt[1+size:])
	return map[string]any{"kty": "EC", "kid": kid, "crv": crv, "x": b64(x), "y": b64(y)}
}

func jwks(t *testing.T, keys ...map[string]any) []byte {
	t.Helper()
	b, err := json.Marshal(map[string]any{"keys": keys})
	require.NoError(t, err)
	return b
}

// A key set verifies tokens by kid; each key only its own algorithm.
func TestJWTWithAKeySet(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	ecKey, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	require.NoError(t, err)
	set, err := server.ParseJWKS(jwks(t,
		rsaJWK("r1", &rsaKey.PublicKey),
		ecJWK("e1", "P-384", &ecKey.PublicKey),
		map[string]any{"kty": "RSA", "kid": "enc", "use": "enc", "n": "AQAB", "e": "AQAB"}, // skipped: not for signatures
	))
	require.NoError(t, err)
	require.Len(t, set, 2)
	srv := e.newServer(t, server.Config{Auth: server.AuthConfig{JWTKeys: set, JWTIssuer: "https://issuer.test"}}, nil)

	exp := time.Now().Add(time.Hour).Unix()
	claims := jwt.MapClaims{"sub": "svc", "scope": "read", "exp": exp, "iss": "https://issuer.test"}
	sign := func(m jwt.SigningMethod, kid string, key any) string {
		tok := jwt.NewWithClaims(m, claims)
		if kid != "" {
			tok.Header["kid"] = kid
		}
		s, err := tok.SignedString(key)
		require.NoError(t, err)
		return s
	}
	call := func(tok string) int {
		return (&env{srv: srv}).serve(newRequest(t, "GET", "/orders/none", "", hdr{"Authorization": "Bearer " + tok})).status
	}
	require.Equal(t, http.StatusNotFound, call(sign(jwt.SigningMethodRS256, "r1", rsaKey)), "RSA key by kid")
	require.Equal(t, http.StatusNotFound, call(sign(jwt.SigningMethodES384, "e1", ecKey)), "EC key by kid")
	require.Equal(t, http.StatusUnauthorized, call(sign(jwt.SigningMethodRS256, "r2", rsaKey)), "unknown kid")
	require.Equal(t, http.StatusUnauthorized, call(sign(jwt.SigningMethodRS256, "", rsaKey)), "no kid, two keys")
	require.Equal(t, http.StatusUnauthorized, call(sign(jwt.SigningMethodES384, "r1", ecKey)), "kid of another key type")
	require.Equal(t, http.StatusUnauthorized, call(sign(jwt.SigningMethodRS512, "r1", rsaKey)), "another algorithm of the key's type")
	otherRSA, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	require.Equal(t, http.StatusUnauthorized, call(sign(jwt.SigningMethodRS256, "r1", otherRSA)), "signed by another key")

	// With one key in the set, a token without kid is verified with it.
	one, err := server.ParseJWKS(jwks(t, ecJWK("only", "P-384", &ecKey.PublicKey)))
	require.NoError(t, err)
	single := e.newServer(t, server.Config{Auth: server.AuthConfig{JWTKeys: one}}, nil)
	res := (&env{srv: single}).serve(newRequest(t, "GET", "/orders/none", "", hdr{"Authorization": "Bearer " + sign(jwt.SigningMethodES384, "", ecKey)}))
	require.Equal(t, http.StatusNotFound, res.status)
}

func TestParseJWKSRefusesWhatItCannotUse(t *testing.T) {
	t.Parallel()
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	good := ecJWK("k", "P-256", &ecKey.PublicKey)
	with := func(k, v string) map[string]any {
		m := map[string]any{}
		for kk, vv := range good {
			m[kk] = vv
		}
		if v == "" {
			delete(m, k)
		} else {
			m[k] = v
		}
		return m
	}
	offCurve := with("y", b64(make([]byte, 32)))
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	require.NoError(t, err)
	for name, data := range map[string][]byte{
		"not JSON":        []byte("{"),
		"no keys":         []byte(`{}`),
		"empty set":       jwks(t),
		"no kid":          jwks(t, with("kid", "")),
		"duplicate kid":   jwks(t, good, good),
		"private key":     jwks(t, with("d", b64([]byte("secret")))),
		"symmetric key":   jwks(t, map[string]any{"kty": "oct", "kid": "h", "k": b64([]byte("0123456789abcdef0123456789abcdef"))}),
		"unknown curve":   jwks(t, with("crv", "P-192")),
		"off the curve":   jwks(t, offCurve),
		"short x":         jwks(t, with("x", b64([]byte{1, 2, 3}))),
		"alg mismatch":    jwks(t, with("alg", "ES384")),
		"alg none":        jwks(t, with("alg", "none")),
		"small RSA":       jwks(t, rsaJWK("r", &small.PublicKey)),
		"bad RSA e":       jwks(t, map[string]any{"kty": "RSA", "kid": "r", "n": b64(make([]byte, 256)), "e": "AA"}),
		"only enc keys":   jwks(t, with("use", "enc")),
		"no kty":          jwks(t, with("kty", "")),
		"bad base64 in n": jwks(t, map[string]any{"kty": "RSA", "kid": "r", "n": "!!", "e": "AQAB"}),
	} {
		_, err := server.ParseJWKS(data)
		require.Error(t, err, name)
	}
	set, err := server.ParseJWKS(jwks(t, with("alg", "ES256")))
	require.NoError(t, err)
	require.IsType(t, &ecdsa.PublicKey{}, set["k"])
	_, err = server.New(server.Config{Auth: server.AuthConfig{JWTKeys: map[string]crypto.PublicKey{"x": "not a key"}}})
	require.Error(t, err)
}
