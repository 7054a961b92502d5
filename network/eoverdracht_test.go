package network

import (
	"context"
	"net/http"
	"testing"

	"github.com/schakel-nl/schakel/eoverdracht"
)

// startTransferNetwork runs the demo network for eOverdracht: the GP
// practice's, the hospital's and the nursing home's nodes, with the test
// nodes' default agreements.
func startTransferNetwork(t testing.TB) *Network {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	nw, err := Up(ctx, Options{DataDir: t.TempDir(), Patients: 1, Care: eoverdracht.Name})
	if err != nil {
		t.Fatal(err)
	}
	nw.Start(ctx)
	t.Cleanup(func() {
		cancel()
		if err := nw.Wait(); err != nil {
			t.Errorf("network stopped with: %v", err)
		}
	})
	return nw
}

// TestTransferEndToEnd: the hospital transfers the patient of Nictiz
// scenario 1.1b to the nursing home; the nursing home's node reads the
// workflow Task, pulls the aanmeldbericht's $document, accepts, pulls the
// overdrachtbericht's $document and completes the Task; both documents
// arrive whole, and both sides end completed.
func TestTransferEndToEnd(t *testing.T) {
	nw := startTransferNetwork(t)
	s, err := nw.ExchangeTransfer(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if s.Status != "completed" || s.Sender != "completed" || s.Patient != eoverdracht.DemoPatientBSN {
		t.Errorf("receiver %s, sender %s, patient %s", s.Status, s.Sender, s.Patient)
	}
	if len(s.Results) != 2 || s.Results[0].Query != eoverdracht.DemoAdvanceNotice+"/$document" ||
		s.Results[1].Query != eoverdracht.DemoNursingHandoff+"/$document" {
		t.Fatalf("pulled %+v", s.Results)
	}
	byProfile := map[string]TransferDocument{}
	for _, d := range s.Documents {
		byProfile[d.Profile] = d
	}
	an, ho := byProfile[eoverdracht.ProfileAdvanceNotice], byProfile[eoverdracht.ProfileHandoffAdults]
	// The aanmeldbericht references the patient, the author, two
	// organisations, four problems, one alert and a coverage.
	if an.Resources["Composition"] != 1 || an.Resources["Patient"] != 1 || an.Resources["Condition"] != 4 || an.Resources["Organization"] < 2 {
		t.Errorf("aanmeldbericht: %+v", an)
	}
	if ho.Resources["Composition"] != 1 || ho.Resources["AllergyIntolerance"] != 2 || ho.Resources["Observation"] < 3 || ho.Sections < 4 {
		t.Errorf("overdrachtbericht: %+v", ho)
	}
	// The sender's workflow Task went through the receiver's steps.
	var task struct {
		Status string
		Meta   struct{ Profile []string }
	}
	var sent []struct {
		WorkflowTask string `json:"workflowTask"`
		Identifier   string `json:"identifier"`
	}
	internal(t, nw.HospNode, nw.Token(Hospital.URA), http.MethodGet, "/internal/referrals", nil, &sent)
	for _, r := range sent {
		if r.Identifier == s.Referral {
			internal(t, nw.HospNode, nw.Token(Hospital.URA), http.MethodGet, "/internal/fhir/"+r.WorkflowTask, nil, &task)
		}
	}
	if task.Status != "completed" || len(task.Meta.Profile) != 1 || task.Meta.Profile[0] != eoverdracht.ProfileTask {
		t.Errorf("the sender's workflow Task: %+v", task)
	}
}
