package notifiedpull

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/schakel-nl/schakel/addressbook"
	"github.com/schakel-nl/schakel/bgz"
	"github.com/schakel-nl/schakel/careapp"
	"github.com/schakel-nl/schakel/fhir"
	"github.com/schakel-nl/schakel/fhir/store/sqlite"
)

// directoryFunc adapts a function to Directory.
type directoryFunc func(ura string) (string, error)

func (f directoryFunc) Endpoint(_ context.Context, ura, _, _ string) (string, error) { return f(ura) }

// TestReferToReceiverOutsideTheAddressbook: a referral to an organisation
// the addressbook does not list is the participant's mistake, answered
// 422 before anything is created; an addressbook that cannot be asked is
// upstream unavailability (no fhir.Error: the edge answers 502).
func TestReferToReceiverOutsideTheAddressbook(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	st, err := sqlite.Open(ctx, filepath.Join(dir, "fhir.db"), fhir.STU3)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	db, err := OpenDB(ctx, filepath.Join(dir, "np.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if _, err := st.Create(ctx, "90000001", []byte(`{"resourceType":"Patient","identifier":[{"system":"http://fhir.nl/fhir/NamingSystem/bsn","value":"999911259"}]}`)); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		lookup func(string) (string, error)
		status int // 0: no fhir.Error
	}{
		{"not in the addressbook", func(ura string) (string, error) {
			return "", fmt.Errorf("%w: organisation %s (addressing, plateau 3: the national addressbook only)", addressbook.ErrNotFound, ura)
		}, http.StatusUnprocessableEntity},
		{"addressbook unreachable", func(string) (string, error) { return "", errors.New("query addressbook: connection refused") }, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := New(Config{Node: "n", Applications: bgzOnly, DB: db, Store: st, Issuer: "https://sender.example", Directory: directoryFunc(tc.lookup),
				FHIRBase: func(t string) string { return "https://sender.example/fhir/stu3/" + t },
				Parties:  func(ura string) (*Party, bool) { return &Party{URA: ura, HTTP: http.DefaultClient}, ura == "90000001" }})
			_, err := s.Refer(ctx, "90000001", ReferRequest{PatientBSN: "999911259", ReceiverURA: "90000005"})
			if err == nil {
				t.Fatal("referral to an unlisted receiver accepted")
			}
			fe := fhir.AsError(err)
			switch {
			case tc.status == 0 && fe != nil:
				t.Fatalf("error %v is a %d, want an upstream failure", err, fe.Status)
			case tc.status != 0 && (fe == nil || fe.Status != tc.status):
				t.Fatalf("error %v, want a %d OperationOutcome", err, tc.status)
			case tc.status != 0 && !strings.Contains(fe.Issues[0].Diagnostics, "(addressing, plateau 3: the national addressbook only)"):
				// The participant reads where the node looked.
				t.Errorf("diagnostics %q do not say where the node looked", fe.Issues[0].Diagnostics)
			}
			if gs, err := s.Sent(ctx, "90000001"); err != nil || len(gs) != 0 {
				t.Errorf("referrals stored after the refusal: %d (%v), want none", len(gs), err)
			}
		})
	}
}

// bgzOnly is the registry of a node that refers and pulls BgZ.
var bgzOnly = func() *careapp.Registry {
	r, err := careapp.NewRegistry(bgz.New())
	if err != nil {
		panic(err)
	}
	return r
}()
