package admission_test

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwk"

	"github.com/schakel-nl/schakel/admission"
	"github.com/schakel-nl/schakel/fhir"
	"github.com/schakel-nl/schakel/fhir/store"
	"github.com/schakel-nl/schakel/fhir/store/postgres"
	"github.com/schakel-nl/schakel/fhir/store/sqlite"
	"github.com/schakel-nl/schakel/internal/pgdb/pgtest"
	"github.com/schakel-nl/schakel/pki"
	"github.com/schakel-nl/schakel/validation"
)

// TestRegister runs the register's contract against each backend the
// store has: SQLite always, PostgreSQL when SCHAKEL_TEST_POSTGRES is set.
func TestRegister(t *testing.T) {
	backends := map[string]func(t *testing.T) store.Store{
		"sqlite": func(t *testing.T) store.Store {
			st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "admission.db"), fhir.R4)
			if err != nil {
				t.Fatal(err)
			}
			return st
		},
		"postgres": func(t *testing.T) store.Store {
			dsn, schema := pgtest.Schema(t, "admission_test_")
			st, err := postgres.Open(context.Background(), dsn, fhir.R4, postgres.WithSchema(schema))
			if err != nil {
				t.Fatal(err)
			}
			return st
		},
	}
	for name, open := range backends {
		t.Run(name, func(t *testing.T) {
			st := open(t)
			t.Cleanup(func() { st.Close() })
			contract(t, st)
		})
	}
}

func contract(t *testing.T, st store.Store) {
	ctx := context.Background()
	ca, err := pki.NewCA("test CA", time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	other, err := pki.NewCA("other CA", time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	authKey, err := validation.LoadOrCreateAuthority(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	authority, err := pki.PublicJWKS(authKey)
	if err != nil {
		t.Fatal(err)
	}
	reg := admission.New(st, pki.CertPool(ca.Cert), authority)

	issue := func(c *pki.CA, ura string) (jwk.Key, []*x509.Certificate) {
		cert, err := c.IssueUZIServer(pki.ServerCertRequest{ID: pki.UZIServerID{UZI: "900000011", URA: ura, AGB: "00000000"}})
		if err != nil {
			t.Fatal(err)
		}
		key, err := jwk.Import(cert.PrivateKey)
		if err != nil {
			t.Fatal(err)
		}
		return key, []*x509.Certificate{cert.Leaf}
	}
	gpKey, gpChain := issue(ca, "90000001")
	strangerKey, strangerChain := issue(other, "90000001")
	for _, tc := range []struct {
		name  string
		d     admission.Declaration
		key   jwk.Key
		chain []*x509.Certificate
		ok    bool
	}{
		{"participant", admission.Declaration{URA: "90000001", Name: "De Linde", Roles: []admission.Role{admission.Participant},
			Agreement: "TWIIN-DO-2025-001", ServedBy: "90000001"}, gpKey, gpChain, true},
		{"without agreement", admission.Declaration{URA: "90000001", Name: "De Linde", Roles: []admission.Role{admission.Participant}}, gpKey, gpChain, false},
		{"another URA than the certificate's", admission.Declaration{URA: "90000002", Name: "Rijnstroom", Roles: []admission.Role{admission.GtKOperator}}, gpKey, gpChain, false},
		{"untrusted certificate", admission.Declaration{URA: "90000001", Name: "De Linde", Roles: []admission.Role{admission.GtKVendor}}, strangerKey, strangerChain, false},
		{"unknown role", admission.Declaration{URA: "90000001", Name: "De Linde", Roles: []admission.Role{"notaris"}}, gpKey, gpChain, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			signed, err := admission.SignDeclaration(tc.d, tc.key, tc.chain)
			if err != nil {
				t.Fatal(err)
			}
			_, err = reg.Admit(ctx, signed)
			if tc.ok != (err == nil) || (err != nil && !errors.Is(err, admission.ErrDeclaration)) {
				t.Fatalf("Admit: %v, want ok=%v", err, tc.ok)
			}
		})
	}
	org, err := st.Read(ctx, "admission", "Organization", "ura-90000001")
	if err != nil {
		t.Fatal(err)
	}
	var o struct {
		Type []struct {
			Coding []struct{ Code string } `json:"coding"`
		} `json:"type"`
	}
	_ = json.Unmarshal(org.Body, &o)
	if len(o.Type) != 1 || o.Type[0].Coding[0].Code != string(admission.Participant) {
		t.Errorf("Organization.type = %+v, want the participant role only (refused declarations leave no trace)", o.Type)
	}

	if _, err := reg.Proofs(ctx, "90000001", "bgz"); !errors.Is(err, admission.ErrNoProof) {
		t.Fatalf("before any proof: %v, want ErrNoProof", err)
	}
	proof := func(ura string, validity time.Duration, now time.Time) string {
		rep := validation.Report{Kit: validation.KitName, Target: validation.Target{URL: "https://127.0.0.1:1", URA: ura, CertificateSHA256: "ab"},
			Role: validation.RoleSender, Care: "bgz", Plateau: 1, Summary: validation.Summary{Total: 1, Passed: 1, Conformant: true}}
		b, _ := json.Marshal(rep)
		p, err := validation.IssueProof(b, authKey, validity, now)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	if _, err := reg.Record(ctx, proof("90000001", time.Hour, time.Now().Add(-2*time.Hour))); err == nil {
		t.Error("an expired proof was recorded")
	}
	if _, err := reg.Record(ctx, proof("90000001", time.Hour, time.Now())[:20]+"x"); err == nil {
		t.Error("a broken proof was recorded")
	}
	if _, err := reg.Record(ctx, proof("90000001", time.Hour, time.Now())); err != nil {
		t.Fatal(err)
	}
	got, err := reg.Proofs(ctx, "90000001", "bgz")
	if err != nil || len(got) != 1 || got[0].Role != validation.RoleSender {
		t.Fatalf("Proofs = %v, %v", got, err)
	}
	if _, err := reg.Proofs(ctx, "90000001", "eoverdracht"); !errors.Is(err, admission.ErrNoProof) {
		t.Errorf("another care application: %v, want ErrNoProof", err)
	}
	if _, err := reg.Proofs(ctx, "90000002", "bgz"); !errors.Is(err, admission.ErrNoProof) {
		t.Errorf("another URA: %v, want ErrNoProof", err)
	}
}
