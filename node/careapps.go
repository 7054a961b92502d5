package node

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/schakel-nl/schakel/addressbook"
	"github.com/schakel-nl/schakel/beeld"
	"github.com/schakel-nl/schakel/bgz"
	"github.com/schakel-nl/schakel/bgzr4"
	"github.com/schakel-nl/schakel/careapp"
	"github.com/schakel-nl/schakel/careapp/hosted"
	"github.com/schakel-nl/schakel/correspondentie"
	"github.com/schakel-nl/schakel/eoverdracht"
	"github.com/schakel-nl/schakel/fhir"
	"github.com/schakel-nl/schakel/fhir/rest"
	"github.com/schakel-nl/schakel/geboortezorg"
	"github.com/schakel-nl/schakel/internal/faults"
	"github.com/schakel-nl/schakel/oauth"
	"github.com/schakel-nl/schakel/policy"
	"github.com/schakel-nl/schakel/push"
)

// DefaultApplications are the care applications Schakel ships, in the
// order the node prefers them: BgZ (Notified Pull, Direct Pull, Indexed
// Pull), BgZ on R4 (Notified Pull, Direct Pull), Correspondentie and
// Geboortezorg (Push), eOverdracht (Notified Pull) and Beeldbeschikbaarheid
// (Direct Pull, Indexed Pull; routes of its own). Another is added here and
// nowhere else in the node (see docs/architecture.md, "Care applications").
func DefaultApplications() *careapp.Registry {
	r, err := careapp.NewRegistry(bgz.New(), bgzr4.New(), correspondentie.New(), geboortezorg.New(), eoverdracht.New(), beeld.New())
	if err != nil {
		// The shipped applications are fixed; a refusal is a defect
		// every test of the node shows.
		panic(err)
	}
	return r
}

// applications are Options' care applications when given, else the ones
// Schakel ships.
func applications(opts Options) *careapp.Registry {
	if opts.Applications != nil {
		return opts.Applications
	}
	return DefaultApplications()
}

// pushApplications are the registered applications that run on Push, as
// the Push service takes them.
func pushApplications(apps *careapp.Registry) ([]push.Application, error) {
	var out []push.Application
	for _, a := range apps.On(careapp.Push) {
		p, ok := a.(push.Application)
		if !ok {
			return nil, fmt.Errorf("care application %s runs on push but has no message shape (push.Application)", a.Name())
		}
		out = append(out, p)
	}
	return out, nil
}

// patientBSN is the one patient a request's parameters name by BSN, as
// the first registered query set that finds one reads them.
func (n *Node) patientBSN(params url.Values) string {
	for _, a := range n.apps.All() {
		if q, ok := a.(careapp.QuerySet); ok {
			if bsn, ok := q.PatientBSN(params); ok {
				return bsn
			}
		}
	}
	return ""
}

// checkApplications refuses at start a set of care applications the node
// cannot run: a pull application (a query set, or routes of its own)
// without an access policy (policy/<name>.yaml, embedded or in
// partners.policydir; the plateau enforcer would refuse every request for
// it) or whose policy is for another FHIR version, an application with
// routes of its own that cannot be mounted (careapp/hosted.Application),
// and two applications claiming the same public route.
func checkApplications(apps *careapp.Registry, policies policy.Set) error {
	var errs []error
	claimed := map[string]string{}
	for _, a := range apps.All() {
		_, isQ := a.(careapp.QuerySet)
		r, isR := a.(careapp.Routes)
		if isR {
			if _, ok := a.(hosted.Application); !ok {
				errs = append(errs, fmt.Errorf("care application %s has public routes of its own but cannot be mounted (hosted.Application)", a.Name()))
			}
			for _, pat := range r.PublicPatterns() {
				if other, ok := claimed[pat]; ok {
					errs = append(errs, fmt.Errorf("care applications %s and %s both claim the public route %q", other, a.Name(), pat))
				}
				claimed[pat] = a.Name()
			}
		}
		if !isQ && !isR {
			continue
		}
		p, ok := policies[a.Name()]
		switch {
		case !ok:
			errs = append(errs, fmt.Errorf("care application %s has no access policy (%s.yaml)", a.Name(), a.Name()))
		case p.FHIRVersion != a.FHIRVersion():
			errs = append(errs, fmt.Errorf("care application %s is FHIR %s, its policy %s is for %s", a.Name(), a.FHIRVersion(), p.File, p.FHIRVersion))
		}
	}
	return errors.Join(errs...)
}

// DataEndpoints are the addressbook Endpoints of participant ura's data on
// the node at publicURL: one per registered application with a query set,
// under its own payloadType, at the participant's FHIR base of the
// application's version: /fhir/stu3/{ura} (fhirVersion 3.0) or
// /fhir/r4/{ura} (4.0). The workflow Task of an R4 application's referral
// stays on the STU3 base, beside the notification endpoint of the
// technical agreement.
func DataEndpoints(apps *careapp.Registry, publicURL, ura string) []addressbook.EndpointSpec {
	var out []addressbook.EndpointSpec
	for _, a := range apps.All() {
		q, ok := a.(careapp.QuerySet)
		if !ok {
			continue
		}
		ep := addressbook.EndpointSpec{ID: "ep-" + ura + "-" + a.Name(), PayloadType: q.ServerPayloadType(),
			Address: Endpoints(publicURL, ura).BgZ, FHIRVersion: "3.0"}
		if a.FHIRVersion() == fhir.R4 {
			ep.Address, ep.FHIRVersion = strings.TrimSuffix(publicURL, "/")+"/fhir/r4/"+ura, "4.0"
		}
		out = append(out, ep)
	}
	return out
}

// applicationVersion refuses the data request of a care application on a
// FHIR base of another version than the application's: an R4
// application's searches and reads go to the R4 base (/fhir/r4/{ura});
// on the STU3 base its token reaches only the workflow Task, which the
// technical agreement keeps there. (An STU3 application's token holds on
// the R4 base: see verifyData.)
func (n *Node) applicationVersion(v fhir.Version, tok *oauth.AccessToken, req *rest.Request) error {
	if tok == nil || len(tok.Scope) == 0 || v != fhir.STU3 || req.Type == "Task" || n.faults.Set().Has(faults.DataOnTaskBase) {
		return nil
	}
	a, ok := n.apps.Get(tok.Scope[0])
	if !ok || a.FHIRVersion() == v {
		return nil
	}
	return fhir.Errorf(http.StatusBadRequest, "not-supported",
		"care application %s exchanges FHIR %s: this is the FHIR %s base; ask its data at %s", a.Name(), versionName(a.FHIRVersion()), versionName(v), n.fhirBaseR4(req.Tenant))
}

// versionName is a FHIR version as people write it.
func versionName(v fhir.Version) string {
	switch v {
	case fhir.STU3:
		return "STU3 (3.0)"
	case fhir.R4:
		return "R4 (4.0)"
	}
	return string(v)
}
