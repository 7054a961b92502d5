package pki

import (
	"bytes"
	"crypto/ecdsa"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func newTestCA(t testing.TB, name string) *CA {
	t.Helper()
	ca, err := NewCA(name, time.Time{}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func TestLoadOrCreateCAReuses(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	first, err := LoadOrCreateCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	info, err := os.Stat(filepath.Join(dir, "ca-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	if perm := info.Mode().Perm(); perm != 0o600 {
		t.Errorf("ca-key.pem mode = %o, want 600", perm)
	}
	second, err := LoadOrCreateCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(first.Cert.Raw, second.Cert.Raw) {
		t.Fatal("second call returned a different CA certificate")
	}
	if !first.Key.(*ecdsa.PrivateKey).Equal(second.Key) {
		t.Fatal("second call returned a different CA key")
	}
	if !second.Cert.IsCA {
		t.Fatal("not a CA")
	}
}

func TestLoadOrCreateCARefusesHalfState(t *testing.T) {
	dir := t.TempDir()
	if _, err := LoadOrCreateCA(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, "ca-key.pem")); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreateCA(dir); err == nil {
		t.Fatal("a certificate without its key must not be silently replaced")
	}
}

func TestLoadOrIssueUZIServer(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t, "dev CA")
	req := ServerCertRequest{ID: testID, CommonName: "node-a"}

	first, err := LoadOrIssueUZIServer(dir, "node-a", ca, req)
	if err != nil {
		t.Fatal(err)
	}
	info, err := os.Stat(filepath.Join(dir, "node-a-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	if perm := info.Mode().Perm(); perm != 0o600 {
		t.Errorf("key mode = %o, want 600", perm)
	}

	same := func(a, b [][]byte) bool { return bytes.Equal(a[0], b[0]) }

	again, err := LoadOrIssueUZIServer(dir, "node-a", ca, req)
	if err != nil {
		t.Fatal(err)
	}
	if !same(first.Certificate, again.Certificate) {
		t.Fatal("unchanged request reissued the certificate")
	}

	// Each step changes one thing that must force a new certificate.
	other := req
	other.ID.URA = "87654321"
	changedID, err := LoadOrIssueUZIServer(dir, "node-a", ca, other)
	if err != nil {
		t.Fatal(err)
	}
	if same(again.Certificate, changedID.Certificate) {
		t.Fatal("changed identity did not reissue")
	}
	if id, _ := ParseUZIServerID(changedID.Leaf); id != other.ID {
		t.Fatalf("reissued identity = %+v", id)
	}

	withDNS := other
	withDNS.DNSNames = []string{"node-a.test"}
	changedDNS, err := LoadOrIssueUZIServer(dir, "node-a", ca, withDNS)
	if err != nil {
		t.Fatal(err)
	}
	if same(changedID.Certificate, changedDNS.Certificate) {
		t.Fatal("changed DNS names did not reissue")
	}

	newCA := newTestCA(t, "regenerated CA")
	changedCA, err := LoadOrIssueUZIServer(dir, "node-a", newCA, withDNS)
	if err != nil {
		t.Fatal(err)
	}
	if err := changedCA.Leaf.CheckSignatureFrom(newCA.Cert); err != nil {
		t.Fatalf("certificate of the old CA was kept: %v", err)
	}

	expired, err := newCA.IssueExpired(withDNS)
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteKeyPair(dir, "node-a", expired); err != nil {
		t.Fatal(err)
	}
	renewed, err := LoadOrIssueUZIServer(dir, "node-a", newCA, withDNS)
	if err != nil {
		t.Fatal(err)
	}
	if !time.Now().Before(renewed.Leaf.NotAfter) {
		t.Fatal("expired certificate was not reissued")
	}
}

func TestLoadOrIssueUZIServerRejectsPathName(t *testing.T) {
	ca := newTestCA(t, "dev CA")
	if _, err := LoadOrIssueUZIServer(t.TempDir(), "../escape", ca, ServerCertRequest{ID: testID}); err == nil {
		t.Fatal("a name with a path separator must be refused")
	}
}

func TestIssueValidityHelpers(t *testing.T) {
	ca := newTestCA(t, "dev CA")
	now := time.Now()
	expired, err := ca.IssueExpired(ServerCertRequest{ID: testID})
	if err != nil {
		t.Fatal(err)
	}
	if !expired.Leaf.NotAfter.Before(now) {
		t.Errorf("IssueExpired NotAfter = %v", expired.Leaf.NotAfter)
	}
	future, err := ca.IssueNotYetValid(ServerCertRequest{ID: testID})
	if err != nil {
		t.Fatal(err)
	}
	if !future.Leaf.NotBefore.After(now) {
		t.Errorf("IssueNotYetValid NotBefore = %v", future.Leaf.NotBefore)
	}
}
