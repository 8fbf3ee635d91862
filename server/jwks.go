package server

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
)

// jwk is the part of a JSON Web Key (RFC 7517, 7518) that verifying
// signatures needs.
type jwk struct {
	Kty string `json:"kty"`
	Kid string `json:"kid"`
	Use string `json:"use"`
	Alg string `json:"alg"`
	// RSA
	N string `json:"n"`
	E string `json:"e"`
	// EC
	Crv string `json:"crv"`
	X   string `json:"x"`
	Y   string `json:"y"`
	// Private parts: a set that carries them is refused, since it was
	// not meant to be published.
	D string `json:"d"`
}

// ParseJWKS reads a JSON Web Key Set ({"keys": [...]}) of RSA and ECDSA
// public keys for AuthConfig.JWTKeys, by key ID. Every key needs a "kid",
// unique in the set; keys whose "use" is not "sig" are skipped. A key's
// "alg", when given, must be the one algorithm Cairn verifies with it:
// RS256 for RSA, ES256, ES384 or ES512 for the curves P-256, P-384 and
// P-521. Private keys, symmetric keys and other key types are errors.
func ParseJWKS(data []byte) (map[string]crypto.PublicKey, error) {
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(data, &set); err != nil {
		return nil, fmt.Errorf("server: JWKS: %w", err)
	}
	if set.Keys == nil {
		return nil, errors.New(`server: JWKS: no "keys" array`)
	}
	out := make(map[string]crypto.PublicKey, len(set.Keys))
	for i, raw := range set.Keys {
		var k jwk
		if err := json.Unmarshal(raw, &k); err != nil {
			return nil, fmt.Errorf("server: JWKS: key %d: %w", i, err)
		}
		if k.Use != "" && k.Use != "sig" {
			continue
		}
		if k.Kid == "" {
			return nil, fmt.Errorf(`server: JWKS: key %d has no "kid"`, i)
		}
		if _, dup := out[k.Kid]; dup {
			return nil, fmt.Errorf("server: JWKS: kid %q appears twice", k.Kid)
		}
		pub, err := k.publicKey()
		if err != nil {
			return nil, fmt.Errorf("server: JWKS: key %q: %w", k.Kid, err)
		}
		alg, err := keyAlg(pub)
		if err != nil {
			return nil, fmt.Errorf("server: JWKS: key %q: %w", k.Kid, err)
		}
		if k.Alg != "" && k.Alg != alg {
			return nil, fmt.Errorf("server: JWKS: key %q: alg %q, but Cairn verifies this key with %s only", k.Kid, k.Alg, alg)
		}
		out[k.Kid] = pub
	}
	if len(out) == 0 {
		return nil, errors.New("server: JWKS: no signing keys")
	}
	return out, nil
}

func (k jwk) publicKey() (crypto.PublicKey, error) {
	if k.D != "" {
		return nil, errors.New("a private key: publish only public keys")
	}
	switch k.Kty {
	case "RSA":
		n, err := b64Int(k.N, "n")
		if err != nil {
			return nil, err
		}
		e, err := b64Int(k.E, "e")
		if err != nil {
			return nil, err
		}
		if !e.IsInt64() || e.Int64() < 3 || e.Int64() > 1<<31-1 || e.Bit(0) == 0 {
			return nil, errors.New("RSA exponent out of range")
		}
		return &rsa.PublicKey{N: n, E: int(e.Int64())}, nil
	case "EC":
		curves := map[string]elliptic.Curve{"P-256": elliptic.P256(), "P-384": elliptic.P384(), "P-521": elliptic.P521()}
		curve, ok := curves[k.Crv]
		if !ok {
			return nil, fmt.Errorf("unsupported curve %q", k.Crv)
		}
		size := (curve.Params().BitSize + 7) / 8
		x, errX := base64.RawURLEncoding.DecodeString(k.X)
		y, errY := base64.RawURLEncoding.DecodeString(k.Y)
		if errX != nil || errY != nil || len(x) != size || len(y) != size {
			return nil, fmt.Errorf("x and y must be %d bytes in unpadded base64url", size)
		}
		// The uncompressed point form; parsing it checks that the point
		// is on the curve.
		point := append(append([]byte{4}, x...), y...)
		pub, err := ecdsa.ParseUncompressedPublicKey(curve, point)
		if err != nil {
			return nil, fmt.Errorf("not a point of %s: %w", k.Crv, err)
		}
		return pub, nil
	case "":
		return nil, errors.New(`no "kty"`)
	default:
		return nil, fmt.Errorf("unsupported key type %q (want RSA or EC)", k.Kty)
	}
}

// b64Int decodes an unsigned big-endian integer in unpadded base64url.
func b64Int(s, name string) (*big.Int, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) == 0 {
		return nil, fmt.Errorf("%q must be an integer in unpadded base64url", name)
	}
	return new(big.Int).SetBytes(b), nil
}

// keyAlg is the one JWT algorithm a public key verifies, so that a key is
// never used with another (a public key as an HMAC secret, say).
func keyAlg(k crypto.PublicKey) (string, error) {
	switch k := k.(type) {
	case *rsa.PublicKey:
		if k.N.BitLen() < 2048 {
			return "", fmt.Errorf("RSA key of %d bits, want at least 2048", k.N.BitLen())
		}
		return "RS256", nil
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return "ES256", nil
		case elliptic.P384():
			return "ES384", nil
		case elliptic.P521():
			return "ES512", nil
		}
		return "", errors.New("unsupported elliptic curve")
	}
	return "", fmt.Errorf("unsupported key type %T (want *rsa.PublicKey or *ecdsa.PublicKey)", k)
}
