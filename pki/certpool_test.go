package pki

import (
	"encoding/pem"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestLoadCertPool(t *testing.T) {
	ca, err := NewCA("Test CA", time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	good := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(good, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Cert.Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty.pem")
	if err := os.WriteFile(empty, []byte("not a certificate\n-----BEGIN NOTHING-----\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	pool, err := LoadCertPool(good)
	if err != nil || !pool.Equal(CertPool(ca.Cert)) {
		t.Fatalf("LoadCertPool(good) = %v", err)
	}
	for _, files := range [][]string{{empty}, {good, filepath.Join(dir, "missing.pem")}} {
		if _, err := LoadCertPool(files...); err == nil {
			t.Errorf("LoadCertPool(%v) accepted", files)
		}
	}
}
