package server

import (
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/labstack/echo/v4"
)

// AuthConfig configures bearer authentication. With neither JWT keys nor
// API keys set, authentication is off and every route is open; otherwise
// every route except /healthz and /readyz (and /metrics, unless
// Config.MetricsScope is set) needs an "Authorization: Bearer" token, and
// routes need their scopes: ReadScope for query routes and WriteScope for
// command routes unless WithScopes says otherwise.
type AuthConfig struct {
	// JWTSecret verifies HS256 tokens; it must be at least 32 bytes.
	JWTSecret []byte
	// JWTPublicKey verifies RS256 tokens (an *rsa.PublicKey of at least
	// 2048 bits) or ES256/ES384/ES512 tokens (an *ecdsa.PublicKey on P-256,
	// P-384 or P-521). ParsePublicKeyPEM reads one. Each key verifies only
	// its own algorithms, so a public key is never used as an HMAC secret.
	JWTPublicKey crypto.PublicKey
	// JWTKeys verify RS256 and ES256/ES384/ES512 tokens by their "kid"
	// header: a key set, as ParseJWKS reads one, for an issuer that
	// rotates its keys. A token without a kid is verified with
	// JWTPublicKey, or with the only key of the set; an unknown kid is a
	// 401. Each key verifies only its own algorithm (see JWTPublicKey).
	JWTKeys map[string]crypto.PublicKey
	// JWTIssuer and JWTAudience, when set, must match the iss and aud
	// claims.
	JWTIssuer   string
	JWTAudience string
	// JWTLeeway is the clock skew allowed when checking exp and nbf (none
	// by default). Tokens must carry exp.
	JWTLeeway time.Duration
	// APIKeys maps static bearer tokens to their scopes. Keys must be at
	// least 16 characters; they are compared in constant time.
	APIKeys map[string][]string
	// ReadScope and WriteScope are the default scopes of query and command
	// routes ("read" and "write").
	ReadScope  string
	WriteScope string
	// Realm is the realm of WWW-Authenticate challenges ("cairn").
	Realm string
}

func (a AuthConfig) enabled() bool {
	return len(a.JWTSecret) > 0 || a.JWTPublicKey != nil || len(a.JWTKeys) > 0 || len(a.APIKeys) > 0
}

// Enabled reports whether a has any way to authenticate, that is whether
// routes need a bearer token.
func (a AuthConfig) Enabled() bool { return a.enabled() }

// Principal is the authenticated caller of a request.
type Principal struct {
	// Subject is the JWT's sub claim, or "api-key:" and a fingerprint of
	// the key (the first 12 hex digits of its SHA-256).
	Subject string
	// Scopes granted: the JWT's scope (space-separated) and scopes (array)
	// claims, or the API key's.
	Scopes []string
	// Method is "jwt" or "api-key".
	Method string
	// Claims are a JWT's claims (nil for an API key).
	Claims map[string]any
}

// HasScope reports whether the principal was granted scope.
func (p Principal) HasScope(scope string) bool { return slices.Contains(p.Scopes, scope) }

type principalCtxKey struct{}

// PrincipalFrom returns the authenticated caller of the request whose
// context ctx is; false when authentication is off or the route is
// anonymous. Query and command handlers receive such a context.
func PrincipalFrom(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(principalCtxKey{}).(Principal)
	return p, ok
}

// ParsePublicKeyPEM parses a PEM-encoded RSA or ECDSA public key (PKIX
// "PUBLIC KEY", PKCS #1 "RSA PUBLIC KEY", or a certificate) for
// AuthConfig.JWTPublicKey.
func ParsePublicKeyPEM(data []byte) (crypto.PublicKey, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("server: no PEM block in public key")
	}
	if k, err := jwt.ParseRSAPublicKeyFromPEM(data); err == nil {
		return k, nil
	}
	if k, err := jwt.ParseECPublicKeyFromPEM(data); err == nil {
		return k, nil
	}
	return nil, fmt.Errorf("server: PEM block %q is not an RSA or ECDSA public key", block.Type)
}

type apiKey struct {
	hash   [32]byte
	scopes []string
	name   string
}

type authenticator struct {
	cfg     AuthConfig
	parser  *jwt.Parser
	methods []string
	keys    []apiKey
}

func newAuthenticator(cfg AuthConfig) (*authenticator, error) {
	setDefault(&cfg.ReadScope, "read")
	setDefault(&cfg.WriteScope, "write")
	setDefault(&cfg.Realm, "cairn")
	if !cfg.enabled() {
		return nil, nil
	}
	a := &authenticator{cfg: cfg}
	if len(cfg.JWTSecret) > 0 {
		if len(cfg.JWTSecret) < 32 {
			return nil, errors.New("server: JWTSecret must be at least 32 bytes")
		}
		a.methods = append(a.methods, "HS256")
	}
	if cfg.JWTPublicKey != nil {
		alg, err := keyAlg(cfg.JWTPublicKey)
		if err != nil {
			return nil, fmt.Errorf("server: JWTPublicKey: %w", err)
		}
		a.addMethod(alg)
	}
	for kid, k := range cfg.JWTKeys {
		alg, err := keyAlg(k)
		if err != nil {
			return nil, fmt.Errorf("server: JWTKeys[%q]: %w", kid, err)
		}
		a.addMethod(alg)
	}
	if len(a.methods) > 0 {
		popts := []jwt.ParserOption{jwt.WithValidMethods(a.methods), jwt.WithExpirationRequired(), jwt.WithLeeway(cfg.JWTLeeway)}
		if cfg.JWTIssuer != "" {
			popts = append(popts, jwt.WithIssuer(cfg.JWTIssuer))
		}
		if cfg.JWTAudience != "" {
			popts = append(popts, jwt.WithAudience(cfg.JWTAudience))
		}
		a.parser = jwt.NewParser(popts...)
	}
	for key, scopes := range cfg.APIKeys {
		if len(key) < 16 || !validToken(key, 4096) || strings.ContainsRune(key, ' ') {
			return nil, errors.New("server: API keys must be at least 16 printable ASCII characters without spaces")
		}
		h := sha256.Sum256([]byte(key))
		a.keys = append(a.keys, apiKey{hash: h, scopes: slices.Clone(scopes), name: "api-key:" + hex.EncodeToString(h[:6])})
	}
	return a, nil
}

func (a *authenticator) addMethod(alg string) {
	if !slices.Contains(a.methods, alg) {
		a.methods = append(a.methods, alg)
	}
}

// publicKey picks the key that verifies t: by its kid in JWTKeys, else
// JWTPublicKey, else the only key of JWTKeys; and only for the algorithm
// that key verifies.
func (a *authenticator) publicKey(t *jwt.Token) (any, error) {
	var key crypto.PublicKey
	kid, hasKid := t.Header["kid"].(string)
	switch {
	case hasKid && len(a.cfg.JWTKeys) > 0:
		key = a.cfg.JWTKeys[kid]
	case a.cfg.JWTPublicKey != nil:
		key = a.cfg.JWTPublicKey
	case len(a.cfg.JWTKeys) == 1:
		for _, k := range a.cfg.JWTKeys {
			key = k
		}
	}
	if key == nil {
		return nil, jwt.ErrTokenUnverifiable
	}
	if alg, err := keyAlg(key); err != nil || alg != t.Method.Alg() {
		return nil, jwt.ErrTokenUnverifiable
	}
	return key, nil
}

// authenticate reads the request's bearer token.
func (s *Server) authenticate(r *http.Request) (Principal, *Problem) {
	a := s.auth
	values := r.Header.Values(echo.HeaderAuthorization)
	if len(values) == 0 {
		return Principal{}, s.unauthorized("", "this route requires a bearer token")
	}
	scheme, token, ok := strings.Cut(strings.TrimSpace(values[0]), " ")
	token = strings.TrimSpace(token)
	if len(values) > 1 || !ok || !strings.EqualFold(scheme, "Bearer") || token == "" {
		return Principal{}, s.unauthorized("invalid_request", "the Authorization header must be \"Bearer <token>\"")
	}
	if a.parser != nil && strings.Count(token, ".") == 2 {
		return s.authenticateJWT(token)
	}
	if len(a.keys) > 0 {
		h := sha256.Sum256([]byte(token))
		var found *apiKey
		for i := range a.keys {
			// Compare with every key, so the time taken says nothing.
			if subtle.ConstantTimeCompare(h[:], a.keys[i].hash[:]) == 1 {
				found = &a.keys[i]
			}
		}
		if found != nil {
			return Principal{Subject: found.name, Scopes: slices.Clone(found.scopes), Method: "api-key"}, nil
		}
	}
	return Principal{}, s.unauthorized("invalid_token", "the bearer token is invalid")
}

func (s *Server) authenticateJWT(token string) (Principal, *Problem) {
	a := s.auth
	claims := jwt.MapClaims{}
	_, err := a.parser.ParseWithClaims(token, claims, func(t *jwt.Token) (any, error) {
		switch t.Method.(type) {
		case *jwt.SigningMethodHMAC:
			if len(a.cfg.JWTSecret) > 0 {
				return a.cfg.JWTSecret, nil
			}
		case *jwt.SigningMethodRSA, *jwt.SigningMethodECDSA:
			return a.publicKey(t)
		}
		return nil, jwt.ErrTokenUnverifiable
	})
	if err != nil {
		detail := "the bearer token is invalid"
		switch {
		case errors.Is(err, jwt.ErrTokenExpired):
			detail = "the bearer token has expired"
		case errors.Is(err, jwt.ErrTokenNotValidYet):
			detail = "the bearer token is not valid yet"
		case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
			detail = "the bearer token lacks a required claim"
		}
		return Principal{}, s.unauthorized("invalid_token", detail).wrap(err)
	}
	p := Principal{Method: "jwt", Claims: claims}
	p.Subject, _ = claims["sub"].(string)
	p.Scopes = append(scopesOf(claims["scope"]), scopesOf(claims["scopes"])...)
	return p, nil
}

// scopesOf reads a scope claim: a space-separated string or an array of
// strings.
func scopesOf(v any) []string {
	switch v := v.(type) {
	case string:
		return strings.Fields(v)
	case []any:
		var out []string
		for _, e := range v {
			if s, ok := e.(string); ok {
				out = append(out, strings.Fields(s)...)
			}
		}
		return out
	}
	return nil
}

// unauthorized is a 401 with a Bearer challenge (RFC 6750).
func (s *Server) unauthorized(code, detail string) *Problem {
	challenge := fmt.Sprintf("Bearer realm=%q", s.cfg.Auth.Realm)
	if code != "" {
		challenge += fmt.Sprintf(", error=%q", code)
	}
	return NewProblem(http.StatusUnauthorized, ProblemUnauthorized, detail).withHeader(echo.HeaderWWWAuthenticate, challenge)
}

// requireScopes authenticates the request and checks that the caller has
// every scope given. With authentication off it does nothing.
func (s *Server) requireScopes(scopes []string) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			if s.auth == nil {
				return next(c)
			}
			p, problem := s.authenticate(c.Request())
			if problem != nil {
				return problem
			}
			for _, scope := range scopes {
				if !p.HasScope(scope) {
					challenge := fmt.Sprintf("Bearer realm=%q, error=\"insufficient_scope\", scope=%q", s.cfg.Auth.Realm, strings.Join(scopes, " "))
					return NewProblem(http.StatusForbidden, ProblemInsufficientScope,
						fmt.Sprintf("this route requires the scope %q", scope)).withHeader(echo.HeaderWWWAuthenticate, challenge)
				}
			}
			r := c.Request()
			c.SetRequest(r.WithContext(context.WithValue(r.Context(), principalCtxKey{}, p)))
			return next(c)
		}
	}
}
