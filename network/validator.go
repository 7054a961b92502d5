package network

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/schakel-nl/schakel/addressbook"
	"github.com/schakel-nl/schakel/careapp"
	"github.com/schakel-nl/schakel/fhir"
	"github.com/schakel-nl/schakel/node"
	"github.com/schakel-nl/schakel/pki"
	"github.com/schakel-nl/schakel/plateau"
	"github.com/schakel-nl/schakel/validation"
)

// Validator is the Twiin validation service: the party `schakel validate`
// plays. The network admits it like any partner (an addressbook entry and
// an agreement with every node) so that a node can be validated against
// it; seed 004 "Testomgeving: beproeven en valideren van applicaties".
var Validator = Participant{URA: "90000995", Name: "Twiin validatieservice", SystemUZI: "900009955", AGB: "00000000"}

// ValidatorDir is where the kit's credentials and kit.json live.
func (nw *Network) ValidatorDir() string { return filepath.Join(nw.opts.DataDir, "validator") }

// prepareValidator enrols the kit under the network's CA before the nodes
// load their trust: its revoked certificate must be on the CRL they read.
func (nw *Network) prepareValidator() error {
	e, err := validation.Enrol(nw.ValidatorDir(), nw.CA, nw.opts.Host, validation.KitFile{
		URA: Validator.URA, Name: Validator.Name, SystemUZI: Validator.SystemUZI, AGB: Validator.AGB,
		CAFile: filepath.Join(nw.opts.DataDir, "pki", "ca.pem")})
	if err != nil {
		return fmt.Errorf("validation service: %w", err)
	}
	nw.validator = e
	pkiDir := filepath.Join(nw.opts.DataDir, "pki")
	if revoked, err := onCRL(filepath.Join(pkiDir, pki.CRLFile), e.RevokedSerial); err != nil || !revoked {
		if _, err := pki.RevokeInDir(pkiDir, nw.CA, []*big.Int{e.RevokedSerial}, 0); err != nil {
			return fmt.Errorf("validation service: revoke its test certificate: %w", err)
		}
	}
	return nil
}

// validatorEntry is the kit's addressbook entry: its enrolment's, plus
// the data endpoint of every care application it has a kit for, as a
// node lists its own (node.DataEndpoints): an R4 application's on the
// kit's FHIR R4 base (the counterpart serves there what the application
// exchanges in R4), the STU3 ones on its STU3 base; and that STU3 base
// under the server payload type of every other STU3 Notified Pull
// application the network runs (e.g. eOverdracht), so that a node pulling
// from the kit as sender finds it there.
func (nw *Network) validatorEntry() addressbook.Entry {
	e := nw.validator.Entry
	e.Endpoints = slices.Clone(e.Endpoints)
	withKit := map[string]bool{}
	for _, k := range nw.kits() {
		withKit[k.Application] = true
	}
	listed := func(id string) bool {
		return slices.ContainsFunc(e.Endpoints, func(ep addressbook.EndpointSpec) bool { return ep.ID == id })
	}
	for _, ep := range node.DataEndpoints(nw.opts.Applications, "https://"+nw.validator.File.Listen, e.URA) {
		if withKit[strings.TrimPrefix(ep.ID, "ep-"+e.URA+"-")] && !listed(ep.ID) {
			e.Endpoints = append(e.Endpoints, ep)
		}
	}
	fhirBase := "https://" + nw.validator.File.Listen + "/fhir/stu3/" + nw.validator.File.URA
	for _, a := range nw.opts.Applications.On(careapp.NotifiedPull) {
		w, ok := a.(careapp.Workflow)
		if !ok || a.FHIRVersion() != fhir.STU3 || w.ServerPayloadType() == addressbook.PayloadBgZServer || listed("ep-"+e.URA+"-"+a.Name()) {
			continue
		}
		e.Endpoints = append(e.Endpoints, addressbook.EndpointSpec{ID: "ep-" + e.URA + "-" + a.Name(), PayloadType: w.ServerPayloadType(),
			Address: fhirBase, FHIRVersion: "3.0"})
	}
	return e
}

func onCRL(path string, serial *big.Int) (bool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return false, err
	}
	if blk, _ := pem.Decode(b); blk != nil {
		b = blk.Bytes
	}
	crl, err := x509.ParseRevocationList(b)
	if err != nil {
		return false, err
	}
	for _, e := range crl.RevokedCertificateEntries {
		if e.SerialNumber.Cmp(serial) == 0 {
			return true, nil
		}
	}
	return false, nil
}

// validatorAgreements are every node's agreement with the validation
// service: that of the GP practice and the hospital (plateau 1, consent
// through the consent service playing Mitz). None with own addressing:
// the kit is found through the addressbook only.
func (nw *Network) validatorAgreements() []plateau.PartnerConfig {
	if nw.opts.OwnAddressing {
		return nil
	}
	// The kit validates at plateau 1 (consent at Mitz, as between the demo
	// nodes by default), whatever the demo nodes agree with each other.
	agreed := plateau.Uniform(1)
	agreed[plateau.Consent] = 4
	return []plateau.PartnerConfig{{URA: Validator.URA, Name: Validator.Name, Plateaus: agreed, Applications: nw.validatorApplications()}}
}

// validatorApplications are the care applications the validation service
// is agreed for: those with a query set, and Beeldbeschikbaarheid where
// the hospital has its PACS.
func (nw *Network) validatorApplications() []string {
	return nw.withImaging(nw.pullApplications())
}

// admitValidator lists the kit in the addressbook (in this process; the
// network in processes lists it with the nodes, loadDirectory) and writes
// its kit.json with the nodes it can validate.
func (nw *Network) admitValidator(ctx context.Context) error {
	if nw.dir != nil {
		if err := nw.dir.Load(ctx, nw.validatorEntry()); err != nil {
			return fmt.Errorf("validation service: addressbook: %w", err)
		}
	}
	f := nw.validator.File
	f.Addressbook = nw.dirURL
	f.Targets = nil
	for i, p := range nw.members {
		// The GP practice and the hospital; the nursing home, where it
		// runs, receives a transfer.
		if p.URA != GP.URA && p.URA != Hospital.URA && p.URA != NursingHome.URA {
			continue
		}
		t := validation.KitTarget{URA: p.URA, Name: p.Name, PublicURL: nw.publicURLs[p.URA], InternalURL: nw.internalURLs[p.URA],
			TokenFile: filepath.Join(nw.opts.DataDir, nw.nodeNames[i], "internal-token-"+p.URA)}
		if p.URA == GP.URA {
			t.Patient = nw.Patients[0].BSN // consent registered for it (registerDemoConsent)
		}
		if p.URA == Hospital.URA && nw.pacs != nil {
			// The PACS holds the patient's studies; the patient permits
			// the hospital's data at Mitz, as for the imaging exchange
			// (in processes UpProcesses registers it in the consent
			// service's store before the service starts).
			if nw.consent != nil {
				if err := permitAtMitz(ctx, nw.consent.Store(), nw.Patients[0].BSN, Hospital.URA); err != nil {
					return err
				}
			}
			t.Patient = nw.Patients[0].BSN
		}
		f.Targets = append(f.Targets, t)
	}
	return validation.WriteKitFile(nw.ValidatorDir(), f)
}
