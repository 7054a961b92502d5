package network

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/schakel-nl/schakel/consult"
	"github.com/schakel-nl/schakel/pki"
	"github.com/schakel-nl/schakel/plateau"
	"github.com/schakel-nl/schakel/validation"
)

// TestRequireValidation agrees network plateau 3 between the GP practice
// and the hospital: the GP's node then requires the hospital's proof of
// validation for BgZ. Before the hospital's node is validated its consult
// gets no token (invalid_grant naming the missing proof); once the kit has
// validated it (as receiver) and the proof is in the admission register,
// the same consult is served.
func TestRequireValidation(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a network and runs the validation kit")
	}
	ctx := context.Background()
	nw := upNetwork(t, Options{DataDir: t.TempDir(), Patients: 1, Plateaus: plateau.Plateaus{plateau.Network: 3}})
	ask := func() (int, string, consult.Result) {
		var res consult.Result
		b, _ := json.Marshal(consult.Request{PatientBSN: nw.Patients[0].BSN, HolderURA: GP.URA, Application: "bgz",
			UserID: "900012345", UserRole: "01.016"})
		req, _ := http.NewRequest(http.MethodPost, nw.HospNode.InternalURL()+"/internal/consult", strings.NewReader(string(b)))
		req.Header.Set("Authorization", "Bearer "+nw.Token(Hospital.URA))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		_ = json.Unmarshal(body, &res)
		return resp.StatusCode, string(body), res
	}

	code, body, res := ask()
	if code == http.StatusOK && res.Resources > 0 {
		t.Fatalf("the hospital, without a proof of validation, retrieved %d resources", res.Resources)
	}
	if !strings.Contains(body, "invalid_grant") || !strings.Contains(body, "proof of validation") {
		t.Errorf("the refusal does not name the missing proof: HTTP %d %s", code, body)
	}

	reps, err := nw.Validate(ctx, ValidationTarget{URA: Hospital.URA, Role: validation.RoleReceiver, Care: "bgz"})
	if err != nil {
		t.Fatal(err)
	}
	if len(reps) == 1 {
		for _, r := range reps[0].Results {
			if r.Status != validation.Passed {
				t.Logf("%s %s: %s", r.ID, r.Status, r.Detail)
			}
		}
	}
	if len(reps) != 1 || !reps[0].Summary.Conformant {
		t.Fatalf("the hospital's node is not conformant as receiver: %+v", reps)
	}
	// The register, read as the monitor would: over FHIR, with mTLS.
	cert, err := nw.issue(t.TempDir(), "monitor", Participant{URA: "90000990", Name: "Twiin Monitor", SystemUZI: "900009900", AGB: "00000000"})
	if err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: pki.ClientTLSConfig(cert, pki.CertPool(nw.CA.Cert))}}
	resp, err := hc.Get(nw.AdmissionURL() + "/VerificationResult?target=Organization/ura-" + Hospital.URA)
	if err != nil {
		t.Fatal(err)
	}
	vr, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(vr), `"validated"`) || !strings.Contains(string(vr), "receiver") {
		t.Fatalf("the register does not list the hospital's proof: HTTP %d %.300s", resp.StatusCode, vr)
	}

	code, body, res = ask()
	if code != http.StatusOK || res.Resources == 0 {
		t.Fatalf("with a proof recorded the consult is still refused: HTTP %d %.500s", code, body)
	}
}

// TestValidatePushRoles: Validate runs, for a node in a Push role, the
// kit of every care application with cases of that role (Correspondentie
// and Geboortezorg, not BgZ), and records each conformant proof.
func TestValidatePushRoles(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a network and runs the validation kit")
	}
	ctx := context.Background()
	nw := upNetwork(t, Options{DataDir: t.TempDir(), Patients: 1})
	reps, err := nw.Validate(ctx, ValidationTarget{URA: GP.URA, Role: validation.RolePushReceiver})
	if err != nil {
		t.Fatal(err)
	}
	var cares []string
	for _, r := range reps {
		cares = append(cares, r.Care)
		if !r.Summary.Conformant || r.Role != validation.RolePushReceiver {
			t.Errorf("%s as %s: %+v", r.Care, r.Role, r.Summary)
		}
	}
	if strings.Join(cares, ",") != "correspondentie,geboortezorg" {
		t.Fatalf("validated for %v, want correspondentie and geboortezorg", cares)
	}
	for _, care := range cares {
		proofs, err := nw.Register().Proofs(ctx, GP.URA, care)
		if err != nil || len(proofs) != 1 || proofs[0].Role != validation.RolePushReceiver {
			t.Errorf("proofs of %s for %s in the register: %+v, %v", GP.URA, care, proofs, err)
		}
	}
}
