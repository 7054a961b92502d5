package validation

import (
	"bytes"
	"encoding/base64"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwk"

	"github.com/schakel-nl/schakel/pki"
)

func conformantReport(t *testing.T) []byte {
	t.Helper()
	rep := &Report{Kit: KitName, Target: Target{URL: "https://127.0.0.1:8443", URA: "90000001", CertificateSHA256: "ab"},
		Role: RoleSender, Care: "bgz", Plateau: 1, Vendor: "Schakel", Version: "dev",
		Started: time.Now().UTC(), Finished: time.Now().UTC(),
		Results: []Result{{ID: "x", Mandatory: true, Requirement: "r", Source: "s", Verdict: Pass("ok")}}}
	rep.Summary = summarize(rep.Results)
	b, err := rep.JSON()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestProofIssueAndVerify(t *testing.T) {
	dir := t.TempDir()
	key, err := LoadOrCreateAuthority(dir)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := ReadAuthorityJWKS(filepath.Join(dir, AuthorityJWKSFile))
	if err != nil {
		t.Fatal(err)
	}
	report := conformantReport(t)
	now := time.Now()
	proof, err := IssueProof(report, key, 0, now)
	if err != nil {
		t.Fatal(err)
	}
	c, err := VerifyProof(proof, keys, report, now)
	if err != nil {
		t.Fatalf("a genuine proof: %v", err)
	}
	if c.NodeURA != "90000001" || c.Role != RoleSender || c.Care != "bgz" || c.Plateau != 1 || c.ReportSHA256 == "" {
		t.Errorf("claims %+v", c)
	}

	// A proof whose payload was changed (here: another plateau).
	parts := strings.Split(proof, ".")
	payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
	parts[1] = base64.RawURLEncoding.EncodeToString(bytes.Replace(payload, []byte(`"plateau":1`), []byte(`"plateau":4`), 1))
	tampered := strings.Join(parts, ".")

	otherKey, err := pki.LoadOrCreateSigningKey(filepath.Join(t.TempDir(), "other.pem"))
	if err != nil {
		t.Fatal(err)
	}
	otherSet, _ := pki.PublicJWKS(otherKey)
	forged, err := IssueProof(report, otherKey, 0, now)
	if err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name   string
		proof  string
		keys   jwk.Set
		report []byte
		now    time.Time
		want   error
	}{
		{"tampered proof", tampered, keys, report, now, ErrProofInvalid},
		{"proof signed by another key", forged, keys, report, now, ErrProofInvalid},
		{"tampered report", proof, keys, bytes.Replace(report, []byte(`"passed"`), []byte(`"failed"`), 1), now, ErrReportChanged},
		{"report of another run", proof, keys, append(bytes.Clone(report), ' '), now, ErrReportChanged},
		{"expired", proof, keys, report, now.Add(DefaultProofValidity + time.Hour), ErrProofExpired},
		{"genuine, without report", proof, keys, nil, now, nil},
		{"forged proof verified with the forger's own key", forged, otherSet, report, now, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := VerifyProof(tc.proof, tc.keys, tc.report, tc.now)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err %v, want %v", err, tc.want)
			}
		})
	}
}

func TestNoProofForANonConformantReport(t *testing.T) {
	key, err := LoadOrCreateAuthority(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	rep := &Report{Results: []Result{{ID: "x", Mandatory: true, Verdict: Fail("refused nothing")}, {ID: "y", Verdict: Pass("ok")}}}
	rep.Summary = summarize(rep.Results)
	b, _ := rep.JSON()
	if _, err := IssueProof(b, key, 0, time.Now()); !errors.Is(err, ErrNotConformant) {
		t.Fatalf("err %v, want ErrNotConformant", err)
	}
}
