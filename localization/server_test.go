package localization

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/schakel-nl/schakel/audit/audittest"
	"github.com/schakel-nl/schakel/fhir"
	"github.com/schakel-nl/schakel/localization/index"
	"github.com/schakel-nl/schakel/pki"
)

const (
	uraA     = "11111111"
	uraB     = "22222222"
	uraIndex = "33333333"
	bsn1     = "999911120"
	bsn2     = "999911132"
)

var (
	med = index.Coding{System: "http://nictiz.nl/fhir/hcim-2024", Code: "MedicationAgreement"}
	lab = index.Coding{System: "http://nictiz.nl/fhir/hcim-2024", Code: "LaboratoryTestResult"}
)

// testEnv is an index on a real mTLS listener with certificates for two
// organisations.
type testEnv struct {
	t      testing.TB
	ca     *pki.CA
	server *Server
	url    string // FHIR base
	dir    string
	certs  map[string]tls.Certificate
}

func issue(t testing.TB, ca *pki.CA, ura, uzi string) tls.Certificate {
	t.Helper()
	c, err := ca.IssueUZIServer(pki.ServerCertRequest{ID: pki.UZIServerID{UZI: uzi, URA: ura, AGB: "00000000"}})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func newEnv(t testing.TB, mutate func(*ServerConfig)) *testEnv {
	t.Helper()
	ca, err := pki.NewCA("test CA", time.Time{}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	env := &testEnv{t: t, ca: ca, dir: t.TempDir(), certs: map[string]tls.Certificate{
		uraA: issue(t, ca, uraA, "90000001"),
		uraB: issue(t, ca, uraB, "90000002"),
	}}
	cfg := ServerConfig{DataDir: env.dir}
	if mutate != nil {
		mutate(&cfg)
	}
	env.server, err = NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { env.server.Close() })
	srv := httptest.NewUnstartedServer(env.server.Handler())
	srv.TLS = pki.ServerTLSConfig(issue(t, ca, uraIndex, "90000003"), pki.CertPool(ca.Cert))
	srv.StartTLS()
	t.Cleanup(srv.Close)
	env.url = srv.URL + "/fhir"
	return env
}

func (e *testEnv) httpClient(ura string) *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: pki.ClientTLSConfig(e.certs[ura], pki.CertPool(e.ca.Cert)),
	}}
}

func (e *testEnv) client(ura, sourceType string, consent ConsentFilter) *Client {
	e.t.Helper()
	c, err := NewClient(ClientConfig{BaseURL: e.url, HTTPClient: e.httpClient(ura), URA: ura, SourceType: sourceType, Consent: consent})
	if err != nil {
		e.t.Fatal(err)
	}
	return c
}

func mustRegister(t testing.TB, c *Client, bsn string, cc index.Coding) string {
	t.Helper()
	id, _, err := c.Register(context.Background(), Registration{BSN: bsn, CareContext: cc})
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func holders(t *testing.T, c *Client, req LocalizeRequest) []Holder {
	t.Helper()
	res, err := c.Localize(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Warnings) > 0 {
		t.Fatalf("unexpected warnings %v", res.Warnings)
	}
	// Every holder named comes with its hit (hit_test.go checks them);
	// the comparisons here are about who is named.
	for i := range res.Holders {
		if res.Holders[i].Hit == "" {
			t.Fatalf("holder %s without a localization hit", res.Holders[i].URA)
		}
		res.Holders[i].Hit = ""
	}
	return res.Holders
}

func TestRegisterLocalizeWithdraw(t *testing.T) {
	env := newEnv(t, nil)
	ctx := context.Background()
	a := env.client(uraA, "Z3", PresumedConsent)
	b := env.client(uraB, "A1", PresumedConsent)

	idA, created, err := a.Register(ctx, Registration{BSN: bsn1, CareContext: med})
	if err != nil || !created || idA == "" {
		t.Fatalf("register: id=%q created=%v err=%v", idA, created, err)
	}
	again, created, err := a.Register(ctx, Registration{BSN: bsn1, CareContext: med})
	if err != nil || created || again != idA {
		t.Fatalf("repeat register: id=%q created=%v err=%v, want %q not created", again, created, err, idA)
	}
	mustRegister(t, b, bsn1, med)
	idBLab := mustRegister(t, b, bsn1, lab)
	mustRegister(t, b, bsn2, med)

	cases := []struct {
		name string
		req  LocalizeRequest
		want []Holder
	}{
		{"both holders", LocalizeRequest{BSN: bsn1, CareContext: med},
			[]Holder{{URA: uraA, SourceTypes: []string{"Z3"}}, {URA: uraB, SourceTypes: []string{"A1"}}}},
		{"care context", LocalizeRequest{BSN: bsn1, CareContext: lab}, []Holder{{URA: uraB, SourceTypes: []string{"A1"}}}},
		{"provider type filter", LocalizeRequest{BSN: bsn1, CareContext: med, SourceTypes: []string{"Z3"}},
			[]Holder{{URA: uraA, SourceTypes: []string{"Z3"}}}},
		{"other patient", LocalizeRequest{BSN: bsn2, CareContext: med}, []Holder{{URA: uraB, SourceTypes: []string{"A1"}}}},
		{"unknown patient: empty, no error", LocalizeRequest{BSN: "999911144", CareContext: med}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if diff := cmp.Diff(c.want, holders(t, a, c.req), cmpopts.EquateEmpty()); diff != "" {
				t.Fatalf("(-want +got):\n%s", diff)
			}
		})
	}

	// A withdraws by patient; B's registrations stay.
	if err := a.Withdraw(ctx, bsn1, index.Coding{}); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]Holder{{URA: uraB, SourceTypes: []string{"A1"}}}, holders(t, a, LocalizeRequest{BSN: bsn1, CareContext: med})); diff != "" {
		t.Fatalf("after withdraw (-want +got):\n%s", diff)
	}
	// B withdraws one List by id.
	if err := b.WithdrawID(ctx, idBLab); err != nil {
		t.Fatal(err)
	}
	if got := holders(t, a, LocalizeRequest{BSN: bsn1, CareContext: lab}); len(got) != 0 {
		t.Fatalf("withdrawn List still found: %v", got)
	}
	// A may not withdraw B's List.
	err = a.WithdrawID(ctx, idBLab)
	if fe := fhir.AsError(err); fe == nil || fe.Status != http.StatusNotFound {
		t.Fatalf("withdraw of a removed List: %v, want 404", err)
	}
}

func TestPseudonymsNeverExposeTheBSN(t *testing.T) {
	env := newEnv(t, nil)
	ctx := context.Background()
	a := env.client(uraA, "Z3", PresumedConsent)
	b := env.client(uraB, "A1", PresumedConsent)
	pa, err := a.Pseudonym(ctx, bsn1)
	if err != nil {
		t.Fatal(err)
	}
	pb, err := b.Pseudonym(ctx, bsn1)
	if err != nil {
		t.Fatal(err)
	}
	if pa.String() != pb.String() {
		t.Fatal("two nodes derive different pseudonyms for one BSN: they could never match")
	}
	p2, err := a.Pseudonym(ctx, bsn2)
	if err != nil {
		t.Fatal(err)
	}
	if p2.String() == pa.String() {
		t.Fatal("two BSNs share a pseudonym")
	}
	if _, err := a.Pseudonym(ctx, "123456789"); err == nil {
		t.Fatal("an invalid BSN was pseudonymised")
	}
	mustRegister(t, a, bsn1, med)
	if _, err := a.Localize(ctx, LocalizeRequest{BSN: bsn1, CareContext: med}); err != nil {
		t.Fatal(err)
	}
	env.server.Close() // flush SQLite so the files are complete
	for _, name := range []string{"localization.db", "localization.db-wal", "audit.db", "audit.db-wal"} {
		data, err := os.ReadFile(filepath.Join(env.dir, name))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(data, []byte(bsn1)) {
			t.Errorf("%s contains the plain BSN", name)
		}
	}
}

func TestAuditRecordsAccess(t *testing.T) {
	log := &audittest.Log{}
	env := newEnv(t, func(c *ServerConfig) { c.Audit = log })
	a := env.client(uraA, "Z3", PresumedConsent)
	mustRegister(t, a, bsn1, med)
	if _, err := a.Localize(context.Background(), LocalizeRequest{BSN: bsn1, CareContext: med}); err != nil {
		t.Fatal(err)
	}
	p, err := a.Pseudonym(context.Background(), bsn1)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range log.Records() {
		if r.ActorURA != uraA || r.ActorSystem != "90000001" {
			t.Errorf("record %s: actor %s/%s", r.Interaction, r.ActorURA, r.ActorSystem)
		}
		if strings.Contains(r.Patient, bsn1) {
			t.Errorf("record %s holds the BSN", r.Interaction)
		}
		if r.Interaction != "pseudonymize" && r.Patient != p.String() {
			t.Errorf("record %s: patient %q, want the pseudonym", r.Interaction, r.Patient)
		}
		got = append(got, r.Interaction)
	}
	want := []string{"pseudonymize", "register", "pseudonymize", "localize", "pseudonymize"}
	if !slices.Equal(got, want) {
		t.Fatalf("audited %v, want %v", got, want)
	}
}

func TestAuditFailureRefusesTheRequest(t *testing.T) {
	log := &audittest.Log{Fail: true}
	env := newEnv(t, func(c *ServerConfig) { c.Audit = log })
	a := env.client(uraA, "Z3", PresumedConsent)
	_, err := a.Pseudonym(context.Background(), bsn1)
	fe := fhir.AsError(err)
	if fe == nil || fe.Status != http.StatusInternalServerError {
		t.Fatalf("err = %v, want 500", err)
	}
	if strings.Contains(fe.Error(), "disk full") {
		t.Fatal("internal cause leaked to the peer")
	}
}

func TestConsent(t *testing.T) {
	denyB := ConsentFunc(func(_ context.Context, q ConsentQuestion) (bool, error) { return q.HolderURA != uraB, nil })
	failB := ConsentFunc(func(_ context.Context, q ConsentQuestion) (bool, error) {
		if q.HolderURA == uraB {
			return false, errors.New("consent service unreachable")
		}
		return true, nil
	})
	var asked []ConsentQuestion
	recordBSN := ConsentFunc(func(_ context.Context, q ConsentQuestion) (bool, error) {
		asked = append(asked, q)
		return true, nil
	})
	cases := []struct {
		name         string
		server       ConsentFilter
		client       ConsentFilter
		want         []string
		wantWarnings int
	}{
		{name: "client denies", client: denyB, want: []string{uraA}},
		{name: "client error fails closed", client: failB, want: []string{uraA}, wantWarnings: 1},
		{name: "index denies", server: denyB, client: PresumedConsent, want: []string{uraA}},
		{name: "index error fails closed", server: failB, client: PresumedConsent, want: []string{uraA}, wantWarnings: 1},
		{name: "both permit", server: PresumedConsent, client: recordBSN, want: []string{uraA, uraB}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			env := newEnv(t, func(cfg *ServerConfig) { cfg.Consent = c.server })
			mustRegister(t, env.client(uraA, "Z3", PresumedConsent), bsn1, med)
			mustRegister(t, env.client(uraB, "A1", PresumedConsent), bsn1, med)
			res, err := env.client(uraA, "Z3", c.client).Localize(context.Background(), LocalizeRequest{BSN: bsn1, CareContext: med})
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, h := range res.Holders {
				got = append(got, h.URA)
			}
			if !slices.Equal(got, c.want) || len(res.Warnings) != c.wantWarnings {
				t.Fatalf("holders %v warnings %q, want %v and %d warnings", got, res.Warnings, c.want, c.wantWarnings)
			}
			for _, w := range res.Warnings {
				if strings.Contains(w, uraB) || strings.Contains(w, "unreachable") {
					t.Fatalf("warning names the holder or leaks the cause: %q", w)
				}
			}
		})
	}
	if len(asked) != 2 || asked[0].Patient != bsn1 || asked[0].PatientSystem != "http://fhir.nl/fhir/NamingSystem/bsn" || asked[0].RequesterURA != uraA || asked[0].HolderType == "" {
		t.Fatalf("client consent questions: %+v", asked)
	}
}

func TestNewClientRequiresConsentFilter(t *testing.T) {
	_, err := NewClient(ClientConfig{BaseURL: "https://index.example/fhir", HTTPClient: http.DefaultClient, URA: uraA, SourceType: "Z3"})
	if err == nil || !strings.Contains(err.Error(), "ConsentFilter") {
		t.Fatalf("err = %v, want a missing-ConsentFilter error", err)
	}
	for name, cfg := range map[string]ClientConfig{
		"plain http": {BaseURL: "http://index.example/fhir", HTTPClient: http.DefaultClient, URA: uraA, SourceType: "Z3", Consent: PresumedConsent},
		"bad URA":    {BaseURL: "https://index.example/fhir", HTTPClient: http.DefaultClient, URA: "1", SourceType: "Z3", Consent: PresumedConsent},
		"no type":    {BaseURL: "https://index.example/fhir", HTTPClient: http.DefaultClient, URA: uraA, Consent: PresumedConsent},
	} {
		if _, err := NewClient(cfg); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestKeyPersistsAcrossRestarts(t *testing.T) {
	dir := t.TempDir()
	s1, err := NewServer(ServerConfig{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	id := s1.KeyID()
	s1.Close()
	s2, err := NewServer(ServerConfig{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if s2.KeyID() != id {
		t.Fatalf("key changed across restarts: %s then %s", id, s2.KeyID())
	}
	info, err := os.Stat(filepath.Join(dir, "oprf-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v, want 0600", info.Mode().Perm())
	}
	if err := os.WriteFile(filepath.Join(dir, "oprf-key.pem"), []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := NewServer(ServerConfig{DataDir: dir}); err == nil {
		t.Fatal("started with a corrupt key (it must not be replaced)")
	}
}

func TestServerConfigValidate(t *testing.T) {
	if err := (ServerConfig{}).Validate(); err == nil {
		t.Fatal("empty config accepted")
	}
	if err := (ServerConfig{DataDir: "x", EvaluateRate: -1}).Validate(); err == nil {
		t.Fatal("negative rate accepted")
	}
	if err := (ServerConfig{DataDir: "x"}).Validate(); err != nil {
		t.Fatal(err)
	}
}

// decodeOutcome checks that body is an OperationOutcome and returns it.
func decodeOutcome(t *testing.T, body []byte) []fhir.Issue {
	t.Helper()
	var oo struct {
		ResourceType string       `json:"resourceType"`
		Issue        []fhir.Issue `json:"issue"`
	}
	if err := json.Unmarshal(body, &oo); err != nil || oo.ResourceType != "OperationOutcome" || len(oo.Issue) == 0 {
		t.Fatalf("not an OperationOutcome: %s", body)
	}
	return oo.Issue
}
