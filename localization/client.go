package localization

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/schakel-nl/schakel/fhir"
	"github.com/schakel-nl/schakel/localization/index"
	"github.com/schakel-nl/schakel/localization/oprf"
	"github.com/schakel-nl/schakel/nl"
)

// ClientConfig configures a node's client of a referral index, acting for
// one participant.
type ClientConfig struct {
	// BaseURL is the index's FHIR base, e.g. https://index.example:8443/fhir.
	BaseURL string
	// HTTPClient presents the participant's UZI server certificate and
	// verifies the index (pki.ClientTLSConfig).
	HTTPClient *http.Client
	// URA is the participant's URA; it must be the URA of the certificate.
	URA string
	// SourceType is the participant's provider type (SystemSourceType), put
	// on every registration, e.g. "Z3" for a hospital.
	SourceType string
	// Consent decides which holders a Localize answer may show. Required:
	// there is no default, so a node cannot forget the check. Use
	// PresumedConsent only where the framework presumes consent.
	Consent ConsentFilter
}

// Client registers, withdraws and localizes at a referral index. Pseudonyms
// are derived through the index's OPRF evaluation: the BSN never leaves the
// node, and the index never sees it.
type Client struct {
	cfg  ClientConfig
	base string
}

// NewClient checks cfg and returns a client.
func NewClient(cfg ClientConfig) (*Client, error) {
	var errs []error
	u, err := url.Parse(cfg.BaseURL)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		errs = append(errs, errors.New("localization client: BaseURL must be an https URL"))
	}
	if cfg.HTTPClient == nil {
		errs = append(errs, errors.New("localization client: an mTLS HTTPClient is required"))
	}
	if err := nl.ValidateURA(cfg.URA); err != nil {
		errs = append(errs, fmt.Errorf("localization client: %w", err))
	}
	if !validCode(cfg.SourceType) {
		errs = append(errs, errors.New("localization client: SourceType (provider type code) is required"))
	}
	if cfg.Consent == nil {
		errs = append(errs, errors.New("localization client: a ConsentFilter is required"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return &Client{cfg: cfg, base: strings.TrimRight(cfg.BaseURL, "/")}, nil
}

// Pseudonym derives the index pseudonym of bsn: blind it, have the index
// evaluate it, unblind the answer.
func (c *Client) Pseudonym(ctx context.Context, bsn string) (Pseudonym, error) {
	if err := nl.ValidateBSN(bsn); err != nil {
		return Pseudonym{}, err
	}
	b, err := oprf.Blind(pseudonymDomain, []byte(bsn))
	if err != nil {
		return Pseudonym{}, err
	}
	el := base64.StdEncoding.EncodeToString(b.Element)
	var out parameters
	if err := c.do(ctx, http.MethodPost, "/$oprf-evaluate", parameters{ResourceType: "Parameters",
		Parameter: []parameter{{Name: "blindedElement", ValueBase64Binary: &el}}}, &out, http.StatusOK); err != nil {
		return Pseudonym{}, err
	}
	var ev []byte
	var kid string
	for _, p := range out.Parameter {
		switch {
		case p.Name == "evaluatedElement" && p.ValueBase64Binary != nil:
			ev, err = base64.StdEncoding.DecodeString(*p.ValueBase64Binary)
			if err != nil {
				return Pseudonym{}, errors.New("localization client: index sent a malformed evaluatedElement")
			}
		case p.Name == "keyId" && p.ValueString != nil:
			kid = *p.ValueString
		}
	}
	if len(ev) != oprf.ElementSize || kid == "" {
		return Pseudonym{}, errors.New("localization client: index answer lacks evaluatedElement or keyId")
	}
	v, err := b.Finalize(ev)
	if err != nil {
		return Pseudonym{}, fmt.Errorf("localization client: %w", err)
	}
	return Pseudonym{KeyID: kid, Value: v}, nil
}

// Registration is one fact to register: this participant holds data of
// CareContext for the patient with BSN.
type Registration struct {
	BSN         string
	CareContext index.Coding
}

// Register registers r and returns the List id and whether it is new.
func (c *Client) Register(ctx context.Context, r Registration) (string, bool, error) {
	if r.CareContext.System == "" || !validCode(r.CareContext.Code) {
		return "", false, errors.New("localization client: care context needs a system and a code")
	}
	var id string
	var created bool
	err := c.withPseudonym(ctx, r.BSN, func(p Pseudonym) error {
		l := listResource{
			ResourceType: "List",
			Extension: []extension{
				{URL: ExtCustodian, ValueReference: &reference{Type: "Organization", Identifier: &identifier{System: nl.SystemURA, Value: c.cfg.URA}}},
				{URL: ExtSourceType, ValueCoding: &coding{System: SystemSourceType, Code: c.cfg.SourceType}},
			},
			Status:      "current",
			Mode:        "working",
			Code:        &codeableConcept{Coding: []coding{{System: r.CareContext.System, Code: r.CareContext.Code}}},
			Subject:     &reference{Identifier: &identifier{System: SystemPseudonym, Value: p.String()}},
			EmptyReason: &codeableConcept{Coding: []coding{{System: SystemListEmptyReason, Code: "withheld"}}},
		}
		var out listResource
		status, err := c.doStatus(ctx, http.MethodPost, "/List", l, &out, http.StatusCreated, http.StatusOK)
		if err != nil {
			return err
		}
		id, created = out.ID, status == http.StatusCreated
		return nil
	})
	return id, created, err
}

// Withdraw removes this participant's registrations for the patient, in one
// care context when cc is non-zero.
func (c *Client) Withdraw(ctx context.Context, bsn string, cc index.Coding) error {
	return c.withPseudonym(ctx, bsn, func(p Pseudonym) error {
		q := url.Values{"subject:identifier": {SystemPseudonym + "|" + p.String()}}
		if cc != (index.Coding{}) {
			q.Set("code", cc.System+"|"+cc.Code)
		}
		return c.do(ctx, http.MethodDelete, "/List?"+q.Encode(), nil, nil, http.StatusOK)
	})
}

// WithdrawID removes one registration by its List id.
func (c *Client) WithdrawID(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodDelete, "/List/"+url.PathEscape(id), nil, nil, http.StatusNoContent)
}

// LocalizeRequest asks which organisations hold data of CareContext for the
// patient, optionally only of the given provider types.
type LocalizeRequest struct {
	BSN         string
	CareContext index.Coding
	SourceTypes []string
}

// Holder is an organisation the answer names.
type Holder struct {
	URA         string
	SourceTypes []string
	// Hit is the index's signed localization hit for this holder, which a
	// Direct Pull presents to it; empty when the index sent none.
	Hit string `json:"-"`
}

// LocalizeResult is the consent-filtered answer. Warnings say when holders
// were left out because consent could not be verified (at the index or
// here); they never name the holders.
type LocalizeResult struct {
	Holders  []Holder
	Warnings []string
	// Salt is the secret of the hits' patient binding (PatientBinding): the
	// requester reveals it only to the holder it consults.
	Salt []byte `json:"-"`
}

// Localize asks the index and keeps only the holders c's ConsentFilter
// permits; a holder whose consent check fails is left out (fail closed). An
// unknown patient gives an empty result, not an error.
func (c *Client) Localize(ctx context.Context, req LocalizeRequest) (LocalizeResult, error) {
	if req.CareContext.System == "" || !validCode(req.CareContext.Code) {
		return LocalizeResult{}, errors.New("localization client: care context needs a system and a code")
	}
	res := LocalizeResult{Salt: NewSalt()}
	binding := PatientBinding(res.Salt, req.BSN)
	var raw []index.Holder
	var hits map[string]string
	err := c.withPseudonym(ctx, req.BSN, func(p Pseudonym) error {
		ps := p.String()
		params := parameters{ResourceType: "Parameters", Parameter: []parameter{
			{Name: "pseudonym", ValueString: &ps},
			{Name: "patientBinding", ValueString: &binding},
			{Name: "requester", ValueIdentifier: &identifier{System: nl.SystemURA, Value: c.cfg.URA}},
			{Name: "careContext", ValueCoding: &coding{System: req.CareContext.System, Code: req.CareContext.Code}},
		}}
		for _, t := range req.SourceTypes {
			params.Parameter = append(params.Parameter, parameter{Name: "sourceType", ValueCode: &t})
		}
		var b bundle
		if err := c.do(ctx, http.MethodPost, "/Organization/$localize", params, &b, http.StatusOK); err != nil {
			return err
		}
		var err error
		raw, hits, res.Warnings, err = parseOrganizations(&b)
		return err
	})
	if err != nil {
		return LocalizeResult{}, err
	}
	kept, warnings := filterHolders(ctx, c.cfg.Consent, raw, func(h index.Holder) ConsentQuestion {
		return ConsentQuestion{PatientSystem: nl.SystemBSN, Patient: req.BSN, HolderURA: h.URA, HolderType: h.SourceType,
			RequesterURA: c.cfg.URA, CareContext: req.CareContext}
	})
	if len(warnings) > 0 {
		res.Warnings = append(res.Warnings, publicWarnings(warnings)[0].Diagnostics)
	}
	for _, h := range kept {
		if n := len(res.Holders); n > 0 && res.Holders[n-1].URA == h.URA {
			res.Holders[n-1].SourceTypes = append(res.Holders[n-1].SourceTypes, h.SourceType)
			continue
		}
		res.Holders = append(res.Holders, Holder{URA: h.URA, SourceTypes: []string{h.SourceType}, Hit: hits[h.URA]})
	}
	return res, nil
}

// parseOrganizations reads a $localize answer into (URA, type) pairs in URA
// order, the hit per URA, and the warnings of its OperationOutcome entries.
func parseOrganizations(b *bundle) ([]index.Holder, map[string]string, []string, error) {
	if b.ResourceType != "Bundle" {
		return nil, nil, nil, errors.New("localization client: $localize did not answer a Bundle")
	}
	var holders []index.Holder
	hits := map[string]string{}
	var warnings []string
	for _, e := range b.Entry {
		var head struct {
			ResourceType string `json:"resourceType"`
		}
		if err := json.Unmarshal(e.Resource, &head); err != nil {
			return nil, nil, nil, errors.New("localization client: malformed Bundle entry")
		}
		switch head.ResourceType {
		case "Organization":
			var o organization
			if err := json.Unmarshal(e.Resource, &o); err != nil {
				return nil, nil, nil, errors.New("localization client: malformed Organization")
			}
			ura := ""
			for _, id := range o.Identifier {
				if nl.CanonicalSystem(id.System) == nl.SystemURA && nl.ValidateURA(id.Value) == nil {
					ura = id.Value
				}
			}
			if ura == "" {
				return nil, nil, nil, errors.New("localization client: Organization without a valid URA")
			}
			for _, ext := range o.Extension {
				if ext.URL == ExtHit && ext.ValueString != nil {
					hits[ura] = *ext.ValueString
				}
			}
			var types []string
			for _, t := range o.Type {
				for _, cd := range t.Coding {
					if cd.System == SystemSourceType && cd.Code != "" {
						types = append(types, cd.Code)
					}
				}
			}
			if len(types) == 0 {
				types = []string{""}
			}
			for _, t := range types {
				holders = append(holders, index.Holder{URA: ura, SourceType: t})
			}
		case "OperationOutcome":
			var oo struct {
				Issue []fhir.Issue `json:"issue"`
			}
			if err := json.Unmarshal(e.Resource, &oo); err == nil {
				for _, is := range oo.Issue {
					warnings = append(warnings, is.Diagnostics)
				}
			}
		}
	}
	return holders, hits, warnings, nil
}

// withPseudonym derives the pseudonym and runs fn, once more with a fresh
// pseudonym when the index has rotated its key in between (409).
func (c *Client) withPseudonym(ctx context.Context, bsn string, fn func(Pseudonym) error) error {
	for attempt := 0; ; attempt++ {
		p, err := c.Pseudonym(ctx, bsn)
		if err != nil {
			return err
		}
		err = fn(p)
		if fe := fhir.AsError(err); fe != nil && fe.Status == http.StatusConflict && attempt == 0 {
			continue
		}
		return err
	}
}

func (c *Client) do(ctx context.Context, method, path string, in, out any, want ...int) error {
	_, err := c.doStatus(ctx, method, path, in, out, want...)
	return err
}

// doStatus sends in (when non-nil) as FHIR JSON and decodes a response with
// one of the wanted statuses into out. Any other status becomes a
// *fhir.Error carrying the index's OperationOutcome.
func (c *Client) doStatus(ctx context.Context, method, path string, in, out any, want ...int) (int, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return 0, err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return 0, fmt.Errorf("localization client: %w", err)
	}
	req.Header.Set("Accept", "application/fhir+json")
	if in != nil {
		req.Header.Set("Content-Type", "application/fhir+json")
	}
	resp, err := c.cfg.HTTPClient.Do(req)
	if err != nil {
		// The URL holds a pseudonym at most, never a BSN.
		return 0, fmt.Errorf("localization client: %w", err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return 0, fmt.Errorf("localization client: read answer: %w", err)
	}
	for _, w := range want {
		if resp.StatusCode != w {
			continue
		}
		if out != nil && len(data) > 0 {
			if err := json.Unmarshal(data, out); err != nil {
				return 0, fmt.Errorf("localization client: malformed answer from index: %w", err)
			}
		}
		return resp.StatusCode, nil
	}
	fe := &fhir.Error{Status: resp.StatusCode}
	var oo struct {
		ResourceType string       `json:"resourceType"`
		Issue        []fhir.Issue `json:"issue"`
	}
	if json.Unmarshal(data, &oo) == nil && oo.ResourceType == "OperationOutcome" {
		fe.Issues = oo.Issue
	}
	if len(fe.Issues) == 0 {
		fe.Issues = []fhir.Issue{{Severity: "error", Code: "exception", Diagnostics: fmt.Sprintf("index answered %s", resp.Status)}}
	}
	return resp.StatusCode, fe
}
