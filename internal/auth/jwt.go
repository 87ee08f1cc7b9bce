package auth

import (
	"crypto"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Tokens issues and checks the tokens clients authenticate with.
type Tokens interface {
	// New makes a token for user after its password was checked.
	New(user string) (string, error)
	// Replicated reports whether tokens travel in the Authenticate entry
	// and become valid when it applies (simple tokens); JWT tokens are
	// verified by their signature instead.
	Replicated() bool
	// Register records a token whose Authenticate entry was applied.
	Register(token, user string)
	// User returns the user of a valid token.
	User(token string) (string, bool)
	// Forget invalidates user's tokens where the scheme can.
	Forget(user string)
}

// NewTokens builds the token scheme --auth-token names, as etcd parses it:
// "simple", or "jwt,pub-key=FILE,priv-key=FILE,sign-method=ALG,ttl=DURATION"
// (without priv-key a member only verifies tokens). ttl is
// --auth-token-ttl, for simple tokens.
func NewTokens(spec string, ttl time.Duration) (Tokens, error) {
	if spec == "" || spec == "simple" {
		return NewSimpleTokens(ttl, nil), nil
	}
	parts := strings.Split(spec, ",")
	if parts[0] != "jwt" {
		return nil, fmt.Errorf("--auth-token %q: want simple or jwt,pub-key=...,priv-key=...,sign-method=...", spec)
	}
	j := &JWTTokens{ttl: 5 * time.Minute}
	var pubFile, privFile, method string
	for _, p := range parts[1:] {
		k, v, ok := strings.Cut(p, "=")
		if !ok {
			return nil, fmt.Errorf("--auth-token: %q is not key=value", p)
		}
		switch k {
		case "pub-key":
			pubFile = v
		case "priv-key":
			privFile = v
		case "sign-method":
			method = v
		case "ttl":
			d, err := time.ParseDuration(v)
			if err != nil || d <= 0 {
				return nil, fmt.Errorf("--auth-token: ttl %q: want a duration such as 5m", v)
			}
			j.ttl = d
		default:
			return nil, fmt.Errorf("--auth-token: unknown option %q (want pub-key, priv-key, sign-method, ttl)", k)
		}
	}
	j.method = jwt.GetSigningMethod(method)
	if j.method == nil || method == "none" || strings.HasPrefix(method, "HS") {
		return nil, fmt.Errorf("--auth-token: sign-method %q: want one of RS256/384/512, PS256/384/512, ES256/384/512, EdDSA", method)
	}
	if pubFile == "" {
		return nil, fmt.Errorf("--auth-token: jwt needs pub-key=FILE")
	}
	var err error
	if j.pub, err = readKey(pubFile, method, true); err != nil {
		return nil, err
	}
	if privFile != "" {
		if j.priv, err = readKey(privFile, method, false); err != nil {
			return nil, err
		}
	}
	return j, nil
}

func readKey(file, method string, public bool) (any, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("--auth-token: %w", err)
	}
	var k any
	switch {
	case strings.HasPrefix(method, "RS"), strings.HasPrefix(method, "PS"):
		if public {
			k, err = jwt.ParseRSAPublicKeyFromPEM(b)
		} else {
			k, err = jwt.ParseRSAPrivateKeyFromPEM(b)
		}
	case strings.HasPrefix(method, "ES"):
		if public {
			k, err = jwt.ParseECPublicKeyFromPEM(b)
		} else {
			k, err = jwt.ParseECPrivateKeyFromPEM(b)
		}
	default: // EdDSA
		if public {
			k, err = jwt.ParseEdPublicKeyFromPEM(b)
		} else {
			var sk crypto.PrivateKey
			sk, err = jwt.ParseEdPrivateKeyFromPEM(b)
			k = sk
		}
	}
	if err != nil {
		return nil, fmt.Errorf("--auth-token: key %s does not fit sign-method %s: %w", file, method, err)
	}
	return k, nil
}

// JWTTokens are signed tokens (--auth-token jwt,...): any member holding
// the public key verifies them, none stores them, and they expire after
// their ttl.
type JWTTokens struct {
	method jwt.SigningMethod
	pub    any
	priv   any // nil: this member verifies only
	ttl    time.Duration
}

// New signs a token for user.
func (j *JWTTokens) New(user string) (string, error) {
	if j.priv == nil {
		return "", fmt.Errorf("this member has no priv-key in --auth-token and cannot issue JWT tokens")
	}
	t := jwt.NewWithClaims(j.method, jwt.MapClaims{
		"username": user,
		"exp":      time.Now().Add(j.ttl).Unix(),
	})
	return t.SignedString(j.priv)
}

// Replicated is false: a JWT is valid by its signature.
func (j *JWTTokens) Replicated() bool { return false }

// Register does nothing: JWTs are not stored.
func (j *JWTTokens) Register(string, string) {}

// User verifies a token's signature and expiry and returns its user.
func (j *JWTTokens) User(token string) (string, bool) {
	t, err := jwt.Parse(token, func(*jwt.Token) (any, error) { return j.pub, nil },
		jwt.WithValidMethods([]string{j.method.Alg()}), jwt.WithExpirationRequired())
	if err != nil || !t.Valid {
		return "", false
	}
	claims, ok := t.Claims.(jwt.MapClaims)
	if !ok {
		return "", false
	}
	user, ok := claims["username"].(string)
	return user, ok && user != ""
}

// Forget does nothing: a JWT lives until it expires (the user's deletion
// still refuses it, as requests name an existing user).
func (j *JWTTokens) Forget(string) {}
