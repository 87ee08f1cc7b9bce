package auth

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func writeEdKeys(t *testing.T) (pub, priv string) {
	t.Helper()
	pk, sk, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	pubDER, _ := x509.MarshalPKIXPublicKey(pk)
	privDER, _ := x509.MarshalPKCS8PrivateKey(sk)
	pub, priv = filepath.Join(dir, "pub.pem"), filepath.Join(dir, "priv.pem")
	if err := os.WriteFile(pub, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(priv, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: privDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return pub, priv
}

func TestJWTTokensSignVerifyAndExpire(t *testing.T) {
	pub, priv := writeEdKeys(t)
	issuer, err := NewTokens("jwt,pub-key="+pub+",priv-key="+priv+",sign-method=EdDSA,ttl=1m", 0)
	if err != nil {
		t.Fatal(err)
	}
	verifier, err := NewTokens("jwt,pub-key="+pub+",sign-method=EdDSA", 0)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := issuer.New("alice")
	if err != nil {
		t.Fatal(err)
	}
	if user, ok := verifier.User(tok); !ok || user != "alice" {
		t.Errorf("a member with the public key only: User = %q, %v; want alice", user, ok)
	}
	if _, ok := verifier.User(tok[:len(tok)-2] + "xx"); ok {
		t.Error("a token with a damaged signature was accepted")
	}
	if _, err := verifier.New("alice"); err == nil {
		t.Error("a member without priv-key issued a token")
	}
	other, otherPriv := writeEdKeys(t)
	forger, _ := NewTokens("jwt,pub-key="+other+",priv-key="+otherPriv+",sign-method=EdDSA", 0)
	forged, _ := forger.New("root")
	if _, ok := verifier.User(forged); ok {
		t.Error("a token signed with another key was accepted")
	}
	short, _ := NewTokens("jwt,pub-key="+pub+",priv-key="+priv+",sign-method=EdDSA,ttl=1ms", 0)
	old, _ := short.New("alice")
	time.Sleep(1100 * time.Millisecond) // JWT expiry has one-second resolution
	if _, ok := verifier.User(old); ok {
		t.Error("an expired token was accepted")
	}
}

func TestTokenSpecsRefusedNameTheFlag(t *testing.T) {
	pub, _ := writeEdKeys(t)
	for _, spec := range []string{
		"jwt", "jwt,sign-method=EdDSA", "jwt,pub-key=" + pub, "jwt,pub-key=" + pub + ",sign-method=HS256",
		"jwt,pub-key=" + pub + ",sign-method=RS256", "jwt,pub-key=/nonexistent,sign-method=EdDSA",
		"jwt,pub-key=" + pub + ",sign-method=EdDSA,ttl=soon", "jwt,pub-key=" + pub + ",sign-method=EdDSA,color=red", "opaque",
	} {
		if _, err := NewTokens(spec, 0); err == nil || !strings.Contains(err.Error(), "--auth-token") {
			t.Errorf("NewTokens(%q): err %v, want a refusal naming --auth-token", spec, err)
		}
	}
}
