package auth

import (
	"crypto/rand"
	"encoding/base64"
	"sync"
	"time"
)

// SimpleTokens holds the simple tokens (--auth-token simple) issued by
// applied Authenticate requests: an opaque random string per session,
// valid on every member, expiring after ttl without use (etcd's rule).
type SimpleTokens struct {
	ttl time.Duration
	now func() time.Time

	mu     sync.Mutex
	tokens map[string]*session
}

type session struct {
	user    string
	expires time.Time
}

// NewSimpleTokens returns an empty registry; ttl 0 means etcd's 300 s.
func NewSimpleTokens(ttl time.Duration, now func() time.Time) *SimpleTokens {
	if ttl <= 0 {
		ttl = 300 * time.Second
	}
	if now == nil {
		now = time.Now
	}
	return &SimpleTokens{ttl: ttl, now: now, tokens: make(map[string]*session)}
}

// New makes a token to propose with an Authenticate request.
func (t *SimpleTokens) New(string) (string, error) {
	b := make([]byte, 24)
	_, _ = rand.Read(b) // never fails (crypto/rand documents it)
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// Replicated is true: a simple token is valid once its Authenticate entry
// applied.
func (t *SimpleTokens) Replicated() bool { return true }

// Register records a token for user, as its Authenticate entry applies.
func (t *SimpleTokens) Register(token, user string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	for k, s := range t.tokens {
		if now.After(s.expires) {
			delete(t.tokens, k)
		}
	}
	t.tokens[token] = &session{user: user, expires: now.Add(t.ttl)}
}

// User returns the user of a live token and extends its life.
func (t *SimpleTokens) User(token string) (string, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.tokens[token]
	now := t.now()
	if s == nil || now.After(s.expires) {
		delete(t.tokens, token)
		return "", false
	}
	s.expires = now.Add(t.ttl)
	return s.user, true
}

// Forget drops every token of user (deleted, or its password changed).
func (t *SimpleTokens) Forget(user string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for k, s := range t.tokens {
		if s.user == user {
			delete(t.tokens, k)
		}
	}
}
