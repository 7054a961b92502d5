package network

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwk"

	"github.com/schakel-nl/schakel/admission"
	"github.com/schakel-nl/schakel/beeld"
	"github.com/schakel-nl/schakel/careapp"
	"github.com/schakel-nl/schakel/fhir"
	"github.com/schakel-nl/schakel/fhir/rest"
	"github.com/schakel-nl/schakel/fhir/store"
	"github.com/schakel-nl/schakel/fhir/store/sqlite"
	"github.com/schakel-nl/schakel/node"
	"github.com/schakel-nl/schakel/pki"
	"github.com/schakel-nl/schakel/validation"
	"github.com/schakel-nl/schakel/validation/kits"
)

// AdmissionStoreFile is the admission register's database, beside the
// addressbook's in its data directory.
const AdmissionStoreFile = "admission-r4.db"

// startAdmission serves the admission register on the addressbook's
// listener, under /admission/fhir: the same trusted directory service the
// nodes and the monitor already reach, with its own store.
func (nw *Network) startAdmission(ctx context.Context, svc *service) error {
	st, err := nw.openAdmission(ctx)
	if err != nil {
		return err
	}
	nw.admissionURL = svc.url + "/admission/fhir"
	mux := http.NewServeMux()
	mux.Handle("/", svc.srv.Handler)
	mux.Handle("/admission/fhir/{path...}", AdmissionAPI(st, nw.admissionURL, nw.opts.Logger.With("component", "admission")))
	svc.srv.Handler = mux
	return nil
}

// openAdmission opens the admission register's store beside the
// addressbook's, with the development validation authority's key, for
// admitting the participants and recording proofs.
func (nw *Network) openAdmission(ctx context.Context) (store.Store, error) {
	pkiDir := filepath.Join(nw.opts.DataDir, "pki")
	key, err := validation.LoadOrCreateAuthority(pkiDir)
	if err != nil {
		return nil, fmt.Errorf("validation authority: %w", err)
	}
	nw.authority = key
	keys, err := pki.PublicJWKS(key)
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(nw.opts.DataDir, "addressbook")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	st, err := sqlite.Open(ctx, filepath.Join(dir, AdmissionStoreFile), fhir.R4)
	if err != nil {
		return nil, fmt.Errorf("admission register store: %w", err)
	}
	nw.closers = append(nw.closers, st)
	nw.register = admission.New(st, pki.CertPool(nw.CA.Cert), keys)
	return st, nil
}

// AdmissionAPI is the admission register's read-only FHIR API over st,
// whose base is base, for the route /admission/fhir/{path...}: parties
// admit themselves and proofs are recorded through the register's checks,
// not by a plain write. `schakel addressbook serve --admission` serves it
// beside the directory.
func AdmissionAPI(st store.Store, base string, log *slog.Logger) http.Handler {
	api := rest.New(rest.Config{Store: st, Version: fhir.R4, Logger: log})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "the admission register is read-only over FHIR", http.StatusMethodNotAllowed)
			return
		}
		api.Serve(w, r, "admission", base, r.PathValue("path"))
	})
}

// admissionConfig points a node at the register.
func (nw *Network) admissionConfig() node.AdmissionConfig {
	return node.AdmissionConfig{URL: nw.admissionURL,
		AuthorityJWKSFile: filepath.Join(nw.opts.DataDir, "pki", validation.AuthorityJWKSFile)}
}

// Register is the network's admission register.
func (nw *Network) Register() *admission.Register { return nw.register }

// AdmissionURL is the admission register's FHIR base.
func (nw *Network) AdmissionURL() string { return nw.admissionURL }

// admitParticipants has each node's participant (the GP practice, the
// hospital and in the mixed network the nursing home) declare
// themselves: each a deelnemer served by its own node, signed with its
// node's UZI server certificate.
func (nw *Network) admitParticipants(ctx context.Context) error {
	for i, p := range nw.members {
		dir := filepath.Join(nw.opts.DataDir, nw.nodeNames[i], "tls")
		cert, err := tls.LoadX509KeyPair(filepath.Join(dir, "node.pem"), filepath.Join(dir, "node-key.pem"))
		if err != nil {
			return fmt.Errorf("admission of %s: %w", p.Name, err)
		}
		key, err := jwk.Import(cert.PrivateKey)
		if err != nil {
			return err
		}
		signed, err := admission.SignDeclaration(admission.Declaration{URA: p.URA, Name: p.Name,
			Roles: []admission.Role{admission.Participant}, Agreement: "demo-" + p.URA, ServedBy: p.URA}, key, []*x509.Certificate{cert.Leaf})
		if err != nil {
			return err
		}
		if _, err := nw.register.Admit(ctx, signed); err != nil {
			return err
		}
	}
	return nil
}

// ValidationTarget is one node validated at network up.
type ValidationTarget struct {
	URA  string
	Role validation.Role
	// Care is the care application validated; empty is every one of the
	// network's applications that has a kit.
	Care string
}

// DemoValidations are the demo nodes' roles: in Notified Pull and Direct
// Pull the GP practice sends and holds, the hospital receives and
// requests; in Push the hospital sends (its letter) and the GP practice
// receives.
var DemoValidations = []ValidationTarget{{URA: GP.URA, Role: validation.RoleSender}, {URA: GP.URA, Role: validation.RoleHolder},
	{URA: Hospital.URA, Role: validation.RoleReceiver}, {URA: Hospital.URA, Role: validation.RoleRequester},
	{URA: Hospital.URA, Role: validation.RolePushSender}, {URA: GP.URA, Role: validation.RolePushReceiver}}

// validates reports whether a node of this network is validated for care
// in role: the network can exchange the application with the validation
// service — a transfer (careapp.Transfer) needs its sender's dossier and
// the nursing home's node, which only the transfer network (Care set to
// it) has; imaging needs the PACS (Options.Imaging) — and the kit has
// cases of the application's own for the role (the generic cases alone
// prove nothing about it).
func (nw *Network) validates(reg *validation.Registry, care string, role validation.Role) bool {
	a, ok := nw.opts.Applications.Get(care)
	if !ok {
		return false
	}
	if _, isT := a.(careapp.Transfer); isT && nw.opts.Care != care {
		return false
	}
	if care == beeld.Application && !nw.opts.Imaging {
		return false
	}
	return reg.Runnable(role, care, 1) == nil
}

// Validate runs the validation kit in-process against the running nodes
// in the given roles, for each care application of the network whose kit
// has cases of the role (or the target's Care only), issues a proof for
// each conformant report and records it in the admission register; the
// proofs are also written to
// validator/proofs. It returns the reports.
func (nw *Network) Validate(ctx context.Context, targets ...ValidationTarget) ([]*validation.Report, error) {
	file, id, err := validation.LoadIdentity(nw.ValidatorDir())
	if err != nil {
		return nil, err
	}
	reg, err := kits.Registry(nw.opts.Applications, nw.kits())
	if err != nil {
		return nil, err
	}
	outDir := filepath.Join(nw.ValidatorDir(), "proofs")
	if err := os.MkdirAll(outDir, 0o700); err != nil {
		return nil, err
	}
	var reps []*validation.Report
	for _, tg := range targets {
		target, ok := file.TargetFor(tg.URA, "")
		if !ok {
			return reps, fmt.Errorf("validate: no node for %s", tg.URA)
		}
		token, err := os.ReadFile(target.TokenFile)
		if err != nil {
			return reps, err
		}
		// Each node is validated for every care application the kit has
		// cases for, one proof per application and role.
		for _, care := range reg.Applications() {
			if (tg.Care != "" && tg.Care != care) || !nw.validates(reg, care, tg.Role) {
				continue
			}
			rep, err := validation.Run(ctx, validation.Config{Target: target.PublicURL, TargetURA: tg.URA, Role: tg.Role, Care: care,
				Kit: id, Addressbook: file.Addressbook, Listen: file.Listen, Patient: file.Targets[0].Patient, Vendor: "Schakel", Version: "network",
				Driver: validation.SchakelDriver{InternalURL: target.InternalURL, Token: strings.TrimSpace(string(token))}, Wait: 15 * time.Second}, reg)
			if err != nil {
				return reps, fmt.Errorf("validate %s as %s: %w", tg.URA, tg.Role, err)
			}
			reps = append(reps, rep)
			b, err := rep.JSON()
			if err != nil {
				return reps, err
			}
			proof, err := validation.IssueProof(b, nw.authority, 0, time.Now())
			if err != nil {
				nw.printf("  validation  %s %-13s %-15s not conformant: %d mandatory cases did not pass\n", tg.URA, tg.Role, care, rep.Summary.MandatoryNotPass)
				for _, r := range rep.Results {
					if r.Mandatory && r.Status != validation.Passed {
						nw.printf("              %s: %s %s\n", r.ID, r.Status, r.Detail)
					}
				}
				continue
			}
			if _, err := nw.register.Record(ctx, proof); err != nil {
				return reps, err
			}
			name := fmt.Sprintf("%s-%s-%s", tg.URA, care, tg.Role)
			if err := os.WriteFile(filepath.Join(outDir, name+".jws"), []byte(proof+"\n"), 0o600); err != nil {
				return reps, err
			}
			nw.printf("  validation  %s %-13s %-15s %d/%d cases passed; proof recorded in the admission register\n", tg.URA, tg.Role, care, rep.Summary.Passed, rep.Summary.Total)
		}
	}
	return reps, nil
}
