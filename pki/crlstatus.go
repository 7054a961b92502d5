package pki

import (
	"crypto/x509/pkix"
	"encoding/asn1"
	"time"
)

// CRLStatus is one loaded CRL as an operator sees it: which file, whose
// revocations, and when it must have been replaced.
type CRLStatus struct {
	Path       string
	Issuer     string // the signing CA's subject
	NextUpdate time.Time
	Revoked    int // certificates it revokes
}

// CRLs reports the CRLs in use, after a due reload; none when the trust
// has no CRLs configured.
func (t *Trust) CRLs() []CRLStatus {
	if t.crl == nil {
		return nil
	}
	t.crl.poll()
	st := t.crl.state.Load()
	out := make([]CRLStatus, 0, len(st.files))
	for _, f := range st.files {
		out = append(out, CRLStatus{Path: f.path, Issuer: issuerName(f.issuer), NextUpdate: f.next, Revoked: len(f.revoked)})
	}
	return out
}

// issuerName renders a raw subject for display; its bytes in hex when
// they do not parse (they did when the CRL was authenticated).
func issuerName(raw string) string {
	var seq pkix.RDNSequence
	if rest, err := asn1.Unmarshal([]byte(raw), &seq); err != nil || len(rest) > 0 {
		return "unparsable subject"
	}
	var n pkix.Name
	n.FillFromRDNSequence(&seq)
	return n.String()
}
