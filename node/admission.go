package node

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/schakel-nl/schakel/admission"
	"github.com/schakel-nl/schakel/oauth"
	"github.com/schakel-nl/schakel/validation"
)

// AdmissionConfig is where the node finds partners' proofs of validation
// (partners.agreements[].requirevalidation).
type AdmissionConfig struct {
	// URL is the admission register's FHIR R4 base.
	URL string `koanf:"url"`
	// AuthorityJWKSFile holds the validation authority's public keys; a
	// proof is verified by the node, not taken from the register on trust.
	AuthorityJWKSFile string `koanf:"authorityjwksfile"`
	// CacheTTL bounds how long an answer of the register is kept (default
	// 5m): a withdrawn or expired proof is noticed within it.
	CacheTTL time.Duration `koanf:"cachettl"`
}

// validate checks the settings; required tells whether an agreement needs them.
func (c AdmissionConfig) validate(required bool) error {
	var errs []error
	if required && c.URL == "" {
		errs = append(errs, errors.New("admission.url is required: an agreement sets requirevalidation: true"))
	}
	if (required || c.URL != "") && c.AuthorityJWKSFile == "" {
		errs = append(errs, errors.New("admission.authorityjwksfile is required with admission.url"))
	}
	if c.CacheTTL < 0 || c.CacheTTL > 24*time.Hour {
		errs = append(errs, fmt.Errorf("admission.cachettl: %s is not between 0 and 24h", c.CacheTTL))
	}
	return errors.Join(errs...)
}

// setupAdmission builds the register client when one is configured.
func (n *Node) setupAdmission(client *http.Client) error {
	c := n.cfg.Admission
	if c.URL == "" {
		return nil
	}
	keys, err := validation.ReadAuthorityJWKS(c.AuthorityJWKSFile)
	if err != nil {
		return fmt.Errorf("admission.authorityjwksfile: %w", err)
	}
	ttl := c.CacheTTL
	if ttl == 0 {
		ttl = 5 * time.Minute
	}
	n.admission = &admission.Client{Base: c.URL, HTTP: client, Authority: keys, TTL: ttl}
	return nil
}

// checkValidation refuses a data token to a partner whose agreement
// requires validation when its GtK has no valid proof for each care
// application asked for (seed 004). The refusal is invalid_grant naming the
// reason, and is audited with every other refusal of the token endpoint.
func (n *Node) checkValidation(ctx context.Context, clientURA string, scope []string) error {
	a, ok := n.plateaus.Agreement(clientURA)
	if !ok || !a.RequireValidation {
		return nil
	}
	if n.admission == nil {
		// Only the default of network plateau 3–4 gets here: an explicit
		// requirevalidation without admission.url is refused at start.
		return nil
	}
	for _, app := range scope {
		if _, known := n.plateaus.Policies()[app]; !known {
			continue // not a care application (e.g. notify)
		}
		if err := n.admission.Check(ctx, clientURA, app); err != nil {
			if errors.Is(err, admission.ErrUnavailable) {
				return fmt.Errorf("%w: the agreement requires a proof of validation for %s and the admission register cannot be asked now", oauth.ErrTemporarilyUnavailable, app)
			}
			return oauth.RefuseGrant(fmt.Sprintf("the agreement requires a proof of validation of your GtK for %s, and the admission register holds none that is valid", app), err)
		}
	}
	return nil
}
