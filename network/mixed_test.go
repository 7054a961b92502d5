package network

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/schakel-nl/schakel/audit"
	"github.com/schakel-nl/schakel/plateau"
)

// TestMixedNetwork: three nodes whose agreements differ per pair and per
// function. The GP practice's Notified Pulls to the hospital (plateau 3)
// and to the nursing home (plateaus 1–2, a user named by AGB code) both
// complete; the nursing home's consult at the hospital, which asks user
// authentication at plateau 3 where the nursing home's node delivers 2, is
// refused with the reason naming the function and both plateaus, and the
// hospital's audit log records it.
func TestMixedNetwork(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var out bytes.Buffer
	nw, err := Up(ctx, Options{DataDir: t.TempDir(), Mixed: true, Out: &out})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	nw.Start(ctx)
	t.Cleanup(func() { cancel(); _ = nw.Wait() })
	if len(nw.Nodes) != 3 || nw.NursingHomeNode == nil || nw.NursingHomeNode.Name() != "nursinghome-node" {
		t.Fatalf("nodes: %d, nursing home %v", len(nw.Nodes), nw.NursingHomeNode)
	}
	nw.PrintMixedAgreements()
	run, err := nw.RunMixed(ctx)
	if run != nil {
		nw.PrintMixedRun(run)
	}
	t.Log(out.String())
	if err != nil {
		t.Fatal(err)
	}
	if len(run.Exchanges) != 3 {
		t.Fatalf("%d exchanges, want 3", len(run.Exchanges))
	}
	for i, want := range []struct {
		from, to Participant
		refused  bool
	}{{GP, Hospital, false}, {GP, NursingHome, false}, {NursingHome, Hospital, true}} {
		e := run.Exchanges[i]
		if e.From.URA != want.from.URA || e.To.URA != want.to.URA {
			t.Errorf("exchange %d: %s → %s, want %s → %s", i+1, e.From.Name, e.To.Name, want.from.Name, want.to.Name)
		}
		if want.refused {
			if !strings.Contains(e.Refusal, MixedRefusal) || !strings.Contains(e.Audited, MixedRefusal) {
				t.Errorf("exchange %d: refusal %q, audited %q; want both to carry %q", i+1, e.Refusal, e.Audited, MixedRefusal)
			}
			continue
		}
		if e.Summary == nil || e.Summary.Total == 0 || e.Refusal != "" {
			t.Errorf("exchange %d: %s", i+1, e.Outcome)
		}
	}

	// A refusal of an earlier run does not count for the next: on a reused
	// data directory the audit log holds it.
	if got, err := nw.auditedRefusal(ctx, nw.HospNode.Audit().LastSeq()); err == nil {
		t.Errorf("a refusal recorded before the run counted: %s", got)
	}

	// The nursing home's physician was accepted at plateau 2 by the GP
	// practice, named by her AGB code: the GP node's token record says so.
	recs := nodeRecordsBy(ctx, t, nw, NursingHome.URA)
	if !strings.Contains(recs, "authentication plateau 2") || !strings.Contains(recs, NursingHomeUser.ID) {
		t.Errorf("the GP node's audit records of the nursing home do not show its user at authentication plateau 2:\n%s", recs)
	}

	// Addressing 2 between the GP practice and the nursing home: each knows
	// the other's endpoints from the agreement; the hospital's pairs are at
	// 3 and use the addressbook only.
	nhTask := nw.NursingHomeNode.PublicURL() + "/fhir/stu3/" + NursingHome.URA + "/Task"
	for name, want := range map[string]bool{"gp-node": true, "hospital-node": false} {
		b, err := os.ReadFile(filepath.Join(nw.opts.DataDir, name, "node.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Contains(string(b), nhTask); got != want {
			t.Errorf("%s's agreement with the nursing home names its endpoint: %v, want %v", name, got, want)
		}
	}

	// The matrix shows every pair from each side, the differing copy marked.
	text := out.String()
	for _, want := range []string{
		GP.Name + " → " + NursingHome.Name,
		Hospital.Name + " → " + NursingHome.Name,
		NursingHome.Name + " → " + Hospital.Name,
		"3*", "2*",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("the printed matrix lacks %q", want)
		}
	}
}

// nodeRecordsBy is the GP node's token records of an actor, as text.
func nodeRecordsBy(ctx context.Context, t *testing.T, nw *Network, ura string) string {
	t.Helper()
	recs, err := nw.GPNode.Audit().List(ctx, audit.Filter{ActorURA: ura})
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, r := range recs {
		if r.Interaction == "token" {
			b.WriteString(r.ActorUser + " " + strings.Join(r.Checks, "; ") + "\n")
		}
	}
	return b.String()
}

// TestMixedOptionsRefused: the mixed network agrees its own plateaus, so
// it does not combine with options that set them or its addressing.
func TestMixedOptionsRefused(t *testing.T) {
	for name, o := range map[string]Options{
		"plateau":        {Mixed: true, Plateau: 2},
		"own addressing": {Mixed: true, OwnAddressing: true},
		"requesters":     {Mixed: true, Requesters: []Participant{NursingHome}},
	} {
		t.Run(name, func(t *testing.T) {
			o.DataDir = t.TempDir()
			if _, err := Up(context.Background(), o); err == nil || !strings.Contains(err.Error(), "mixed") {
				t.Fatalf("Up: %v, want a refusal naming the mixed network", err)
			}
		})
	}
}

// TestMixedAgreementsCoverEveryPair: every node of the mixed network has
// an agreement with each other node, valid as the node would load it; so
// has every node of the Indexed Pull network under the mixed agreements,
// where the clinic stands where the hospital stands, and of the
// Geboortezorg network, with the midwife practice's pairs.
func TestMixedAgreementsCoverEveryPair(t *testing.T) {
	for _, opts := range []Options{{Mixed: true}, {Mixed: true, IndexedPull: true}, {Mixed: true, Geboortezorg: true}} {
		nw := &Network{opts: opts}
		for _, spec := range nw.nodeSpecs() {
			var cfg plateau.Config
			for _, q := range spec.peers {
				a, err := nw.agreementOf(spec.p, q)
				if err != nil {
					t.Fatal(err)
				}
				if a.URA != q.URA {
					t.Errorf("%s's agreement with %s is for %s", spec.name, q.Name, a.URA)
				}
				cfg.Agreements = append(cfg.Agreements, a)
			}
			if err := cfg.Validate(); err != nil {
				t.Errorf("%+v %s: %v", opts, spec.name, err)
			}
		}
	}
	withClinic, _ := mixedAgreement(NursingHome, Clinic)
	withHospital, _ := mixedAgreement(NursingHome, Hospital)
	if !reflect.DeepEqual(withClinic.Plateaus, withHospital.Plateaus) {
		t.Errorf("the nursing home's agreement with the clinic %v, with the hospital %v", withClinic.Plateaus, withHospital.Plateaus)
	}
}
