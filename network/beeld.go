package network

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/schakel-nl/schakel/beeld"
	"github.com/schakel-nl/schakel/demo"
	"github.com/schakel-nl/schakel/node"
	"github.com/schakel-nl/schakel/plateau"
	"github.com/schakel-nl/schakel/validation"
)

// pacsStandIn is the hospital's PACS in the network of Options.Imaging.
type pacsStandIn struct {
	archive *beeld.Archive
	url     string // its DICOMweb base
}

// pacsPrefix is where the stand-in serves DICOMweb, as a PACS often does
// under a path of its own.
const pacsPrefix = "/dicomweb"

// startPACS runs the hospital's PACS stand-in on loopback, plain HTTP as
// inside the hospital's network, holding the demo studies of every demo
// patient (the same patients Up generates for the GP practice).
func (nw *Network) startPACS() error {
	if !nw.opts.Imaging {
		return nil
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(nw.opts.Host, "0"))
	if err != nil {
		return fmt.Errorf("PACS stand-in: %w", err)
	}
	base := "http://" + ln.Addr().String()
	if nw.pacs, err = newPACSStandIn(nw.opts.Patients, base+pacsPrefix); err != nil {
		ln.Close()
		return err
	}
	mux := http.NewServeMux()
	mux.Handle(pacsPrefix+"/", http.StripPrefix(pacsPrefix, (&beeld.PACS{Archive: nw.pacs.archive, Prefix: pacsPrefix}).Handler()))
	nw.services = append(nw.services, &service{plain: true, name: "pacs", url: base + pacsPrefix, ln: ln,
		srv: &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}})
	return nil
}

// newPACSStandIn is the PACS stand-in at url holding the demo studies of
// the first patients demo patients: what `schakel pacs serve --patients`
// serves, study for study.
func newPACSStandIn(patients int, url string) (*pacsStandIn, error) {
	demos, err := demo.Generate(demo.Options{Count: patients, Seed: 1, GPName: GP.Name})
	if err != nil {
		return nil, err
	}
	archive := beeld.NewArchive()
	for _, p := range demos {
		studies, err := beeld.DemoStudies(ImagingPatient(p))
		if err != nil {
			return nil, err
		}
		archive.Add(studies...)
	}
	return &pacsStandIn{archive: archive, url: url}, nil
}

// pacsFor is the PACS configuration of participant p: the stand-in for
// the hospital, none for the others.
func (nw *Network) pacsFor(p Participant) node.PACSConfig {
	if p.URA != Hospital.URA || nw.pacs == nil {
		return node.PACSConfig{}
	}
	return node.PACSConfig{URL: nw.pacs.url}
}

// PACSURL is the DICOMweb base of the hospital's PACS stand-in; empty
// without Options.Imaging.
func (nw *Network) PACSURL() string {
	if nw.pacs == nil {
		return ""
	}
	return nw.pacs.url
}

// PACSArchive is what the hospital's PACS stand-in holds; nil without
// Options.Imaging.
func (nw *Network) PACSArchive() *beeld.Archive {
	if nw.pacs == nil {
		return nil
	}
	return nw.pacs.archive
}

// ImagingPatient is a demo patient as the PACS knows them: BSN, name,
// birth date and sex from the demo Patient resource.
func ImagingPatient(p demo.Patient) beeld.Patient {
	out := beeld.Patient{BSN: p.BSN, Family: p.Name}
	if given, family, ok := strings.Cut(p.Name, " "); ok {
		out.Given, out.Family = given, family
	}
	if len(p.Resources) > 0 {
		var r struct{ BirthDate, Gender string }
		if json.Unmarshal(p.Resources[0], &r) == nil {
			out.BirthDate = strings.ReplaceAll(r.BirthDate, "-", "")
			switch r.Gender {
			case "female":
				out.Sex = "F"
			case "male":
				out.Sex = "M"
			case "other":
				out.Sex = "O"
			}
		}
	}
	return out
}

// ImagingRun is the outcome of RunImaging.
type ImagingRun struct {
	Patient string
	// Holders are the organisations the referral index named.
	Holders []string
	Result  beeld.Result
	// Expected are the SOP instance UIDs the PACS holds of the retrieved
	// study, sorted: what must have arrived.
	Expected []string
	Took     time.Duration
}

// RunImaging runs Beeldbeschikbaarheid as an Indexed Pull: the patient
// permits the hospital's data at Mitz; the hospital's system announces to
// its node that its PACS holds studies of the patient, which registers the
// holding at the referral index (care context imaging); the GP practice's
// system asks its node for the patient's images wherever they are (POST
// /internal/imaging/indexed-pull): the index names the hospital, the GP's
// node runs an ImagingStudy search at the hospital's node, answered from
// the PACS over QIDO-RS, then a WADO-RS retrieval of the first study
// through the hospital's node. It fails unless the index named the hospital
// and every instance the PACS holds of that study arrived, each parsed as
// DICOM of that study and patient.
func (nw *Network) RunImaging(ctx context.Context) (*ImagingRun, error) {
	if nw.pacs == nil {
		return nil, errors.New("network: RunImaging needs a network started with Imaging")
	}
	patient := nw.Patients[0]
	// The hospital asks consent at the source its agreement with the GP
	// practice names.
	agreed, err := nw.agreementOf(Hospital, GP)
	if err != nil {
		return nil, err
	}
	if err := nw.consentAtHolder(ctx, Hospital, agreed.Plateaus[plateau.Consent], patient.BSN); err != nil {
		return nil, err
	}
	if n := agreed.Plateaus[plateau.Network]; n >= plateau.ValidationFromPlateau {
		if err := nw.validateFirst(ctx, GP, validation.RoleRequester, beeld.Application, "the lookup", n); err != nil {
			return nil, err
		}
	}
	nw.printf("\nBeeldbeschikbaarheid: %s looks up the images of %s wherever they are held and retrieves a study\n", GP.Name, patient.Name)
	hosp := &xis{base: nw.internalURLs[Hospital.URA], token: nw.Token(Hospital.URA), http: &http.Client{Timeout: 60 * time.Second}}
	var announced struct{ Studies int }
	if err := hosp.do(ctx, http.MethodPost, "/internal/imaging/holdings", beeld.HoldingsRequest{Patient: patient.BSN}, &announced); err != nil {
		return nil, fmt.Errorf("the hospital's system announces its images: %w", err)
	}
	nw.printf("  %s's system announces %d studies of the patient: its node registers the holding at the referral index (care context imaging)\n",
		Hospital.Name, announced.Studies)
	gp := &xis{base: nw.internalURLs[GP.URA], token: nw.Token(GP.URA), http: &http.Client{Timeout: 60 * time.Second}}
	run := &ImagingRun{Patient: patient.BSN}
	start := time.Now()
	var answer beeld.Indexed
	if err := gp.do(ctx, http.MethodPost, "/internal/imaging/indexed-pull", beeld.IndexedRequest{Patient: patient.BSN, Retrieve: true,
		User: &plateau.Caller{ID: DemoUser.UZI, Role: DemoUser.Role, LoA: DemoUser.LoA}}, &answer); err != nil {
		return nil, err
	}
	run.Took = time.Since(start)
	var failed []string
	for _, h := range answer.Holders {
		run.Holders = append(run.Holders, h.URA)
		switch {
		case h.URA == Hospital.URA && h.Result != nil:
			run.Result = *h.Result
		case h.Error != "":
			failed = append(failed, fmt.Sprintf("%s: %d %s", h.URA, h.Status, h.Error))
		}
	}
	if !slices.Contains(run.Holders, Hospital.URA) {
		return run, fmt.Errorf("the referral index does not name the hospital as a holder of images (named: %v)", run.Holders)
	}
	if len(failed) > 0 {
		return run, errors.New("not every holder answered: " + strings.Join(failed, "; "))
	}
	got := run.Result.Retrieved
	if len(run.Result.Studies) == 0 || got == nil {
		return run, errors.New("the hospital listed no studies, or none was retrieved")
	}
	st, ok := nw.pacs.archive.Study(got.Study)
	if !ok {
		return run, fmt.Errorf("study %s arrived, but the PACS holds no such study", got.Study)
	}
	run.Expected = beeld.SortedUIDs(st)
	var received []string
	for _, in := range got.Instances {
		received = append(received, in.SOPInstanceUID)
	}
	slices.Sort(received)
	if !got.Verified || !slices.Equal(received, run.Expected) {
		return run, fmt.Errorf("study %s: received instances %v, the PACS holds %v", got.Study, received, run.Expected)
	}
	return run, nil
}

// PrintImaging writes what the lookup and the retrieval brought.
func (nw *Network) PrintImaging(r *ImagingRun) {
	nw.printf("  the referral index names as holders of images: %s\n", strings.Join(r.Holders, ", "))
	nw.printf("  ImagingStudy search at %s: %d studies\n", r.Result.Base, len(r.Result.Studies))
	for _, s := range r.Result.Studies {
		nw.printf("    %s  %s %s, %d series, %d instances\n", s.UID, s.Started, s.Description, s.Series, s.Instances)
	}
	if got := r.Result.Retrieved; got != nil {
		nw.printf("  WADO-RS %s\n    %d instances, %d bytes, every file parsed as DICOM of this study and patient:\n", got.URL, len(got.Instances), got.Bytes)
		for _, in := range got.Instances {
			nw.printf("    SOP instance %s (%dx%d, %d bytes)\n", in.SOPInstanceUID, in.Columns, in.Rows, in.Bytes)
		}
		verdict := "all of"
		if !got.Verified {
			verdict = "NOT"
		}
		nw.printf("  the received SOP instance UIDs: %s the study's %d instances in the PACS (%s)\n", verdict, len(r.Expected), r.Took.Round(time.Millisecond))
	}
}

// PrintPACS writes where the hospital's PACS stand-in serves and what it holds.
func (nw *Network) PrintPACS() {
	if nw.pacs == nil {
		return
	}
	studies := nw.pacs.archive.Studies()
	n := 0
	for _, st := range studies {
		n += st.InstanceCount()
	}
	nw.printf("  %-20s %s   (the hospital's PACS stand-in: %d studies, %d instances; DICOMweb QIDO-RS, WADO-RS)\n", "pacs", nw.pacs.url, len(studies), n)
}

// withImaging adds Beeldbeschikbaarheid to an agreement's care
// applications in the network of Options.Imaging.
func (nw *Network) withImaging(apps []string) []string {
	if nw.opts.Imaging {
		return append(apps, beeld.Application)
	}
	return apps
}
