package network

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/schakel-nl/schakel/demo"
	"github.com/schakel-nl/schakel/eoverdracht"
	"github.com/schakel-nl/schakel/geboortezorg"
	"github.com/schakel-nl/schakel/identification"
	"github.com/schakel-nl/schakel/nl"
	"github.com/schakel-nl/schakel/node"
)

// bsnOrg runs the BSN verification service's stand-in (the SBV-Z role).
var bsnOrg = Participant{URA: "90000992", Name: "BSN-verificatie (SBV-Z stand-in)", SystemUZI: "900009922", AGB: "00000000"}

// RegisterFile is the stand-in's register in its data directory: the file
// `schakel bsn serve --data-dir` reads.
const RegisterFile = "register.json"

// startIdentification binds the BSN verification stand-in; its register
// is filled with the demo patients once they are generated.
func (nw *Network) startIdentification() error {
	dir := filepath.Join(nw.opts.DataDir, "identification")
	cert, err := nw.issue(dir, "identification", bsnOrg)
	if err != nil {
		return err
	}
	svc, err := nw.listen("identification", cert)
	if err != nil {
		return err
	}
	nw.bsn = identification.NewServer(nw.opts.Logger.With("component", "identification"))
	svc.srv.Handler = nw.bsn.Handler()
	nw.bsnURL = svc.url + identification.Path
	return nil
}

// identificationConfig points every node at the stand-in, so that any
// agreement's identification plateau has its service.
func (nw *Network) identificationConfig() node.IdentificationConfig {
	return node.IdentificationConfig{URL: nw.bsnURL}
}

// writeDemoRegister writes the demo patients as the stand-in's register
// (they are the people the BRP knows in this network) and, when the
// stand-in runs in this process, loads it.
func (nw *Network) writeDemoRegister(patients []demo.Patient) error {
	persons := make([]identification.Registered, 0, len(patients))
	for _, p := range patients {
		r, err := identification.PersonFromFHIR(p.Resources[0])
		if err != nil {
			return fmt.Errorf("demo register: patient %s: %w", p.BSN, err)
		}
		persons = append(persons, r)
	}
	if nw.opts.Geboortezorg {
		// The perinatal transfer's mother and child (geboortezorg.Demo) are
		// people of the BRP too: at identification plateau 3–4 the
		// receivers verify the mother's BSN.
		s := geboortezorg.Demo("00000000-0000-4000-8000-000000000000", Midwife.URA, Midwife.Name, time.Now())
		for _, p := range []geboortezorg.Person{s.Mother, s.Child} {
			body, _ := json.Marshal(map[string]any{"resourceType": "Patient", "birthDate": p.BirthDate, "gender": p.Gender,
				"identifier": []any{map[string]string{"system": nl.SystemBSN, "value": p.BSN}},
				"name":       []any{map[string]any{"family": p.Family, "given": []string{p.Given}}}})
			r, err := identification.PersonFromFHIR(body)
			if err != nil {
				return fmt.Errorf("demo register: %s: %w", p.Name(), err)
			}
			persons = append(persons, r)
		}
	}
	if nw.nursingTransfer() {
		// The transfer dossier's patient (eoverdracht.DemoRecord) is a
		// person of the BRP too: at identification plateau 3–4 the
		// hospital verifies her BSN before it refers, the nursing home
		// before it accepts the notification.
		r, err := transferPatient(time.Now())
		if err != nil {
			return err
		}
		persons = append(persons, r)
	}
	b, err := json.MarshalIndent(persons, "", "  ")
	if err != nil {
		return err
	}
	dir := filepath.Join(nw.opts.DataDir, "identification")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	path := filepath.Join(dir, RegisterFile)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return fmt.Errorf("demo register: %w", err)
	}
	if nw.bsn != nil {
		return nw.bsn.LoadRegister(path)
	}
	return nil
}

// transferPatient is the Patient of the demo transfer dossier as the BSN
// verification stand-in registers it: the birth date the hospital's record
// holds, which the verification compares.
func transferPatient(now time.Time) (identification.Registered, error) {
	rec, err := eoverdracht.DemoRecord(now)
	if err != nil {
		return identification.Registered{}, err
	}
	var b struct {
		Entry []struct {
			Resource json.RawMessage `json:"resource"`
		} `json:"entry"`
	}
	if err := json.Unmarshal(rec, &b); err != nil {
		return identification.Registered{}, fmt.Errorf("demo register: the transfer dossier: %w", err)
	}
	for _, e := range b.Entry {
		var p struct {
			ResourceType string
			Identifier   []struct{ System, Value string }
		}
		if json.Unmarshal(e.Resource, &p) != nil || p.ResourceType != "Patient" {
			continue
		}
		for _, id := range p.Identifier {
			if id.System == nl.SystemBSN && id.Value == eoverdracht.DemoPatientBSN {
				r, err := identification.PersonFromFHIR(e.Resource)
				if err != nil {
					return r, fmt.Errorf("demo register: the transfer's patient: %w", err)
				}
				return r, nil
			}
		}
	}
	return identification.Registered{}, fmt.Errorf("demo register: the transfer dossier holds no Patient with BSN %s", eoverdracht.DemoPatientBSN)
}
