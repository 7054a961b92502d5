package plateau

import (
	"context"
	"crypto/tls"
	"fmt"
	"slices"

	"github.com/schakel-nl/schakel/pki"
)

// NEN7512Suites are the cipher suites a plateau 3–4 connection may
// negotiate: the TLS 1.3 suites Go implements (RFC 8446 §B.4), every one
// an AEAD with ephemeral key exchange, all "good" in the NCSC TLS
// guidelines that NEN 7512 points to. Go does not let TLS 1.3 suites be
// configured, so the check names them instead of choosing them: a suite
// added to Go later is refused until it is reviewed and listed here.
var NEN7512Suites = []uint16{
	tls.TLS_AES_128_GCM_SHA256,
	tls.TLS_AES_256_GCM_SHA384,
	tls.TLS_CHACHA20_POLY1305_SHA256,
}

// PeerTrust identifies the peer of a connection and checks its revocation
// status: *pki.Trust.
type PeerTrust interface {
	Peer(cs *tls.ConnectionState) (*pki.Peer, error)
	CheckFreshCRL(peer *pki.Peer) error
}

// NetworkCheck enforces the network function on the connection a request
// came over, at the plateau agreed with the partner:
//
//   - 1–2: mutual TLS as agreed: the client certificate, pinned bilaterally
//     or under a trusted CA, is the partner's own;
//   - 3–4: on top of that, PKIoverheid-style trust only (the CA route, no
//     pinned certificate), TLS 1.3 with one of NEN7512Suites, and a fresh
//     CRL for every certificate of the chain (revocation status known).
//
// It runs at token issuance and at every data access.
type NetworkCheck struct {
	Trust PeerTrust
}

// Function implements Check.
func (NetworkCheck) Function() Function { return Network }

// CheckToken implements TokenCheck.
func (c NetworkCheck) CheckToken(_ context.Context, plateau int, tc *TokenContext) error {
	return c.check(plateau, tc.ClientURA, tc.TLS)
}

// CheckAccess implements AccessCheck.
func (c NetworkCheck) CheckAccess(_ context.Context, plateau int, ac *AccessContext) error {
	return c.check(plateau, ac.PartnerURA, ac.TLS)
}

func (c NetworkCheck) check(plateau int, partner string, cs *tls.ConnectionState) error {
	refuse := func(format string, args ...any) error {
		return &Refusal{Function: Network, Required: plateau, Partner: partner, Reason: fmt.Sprintf(format, args...)}
	}
	if cs == nil || len(cs.PeerCertificates) == 0 {
		return refuse("the request did not come over mutual TLS")
	}
	peer, err := c.Trust.Peer(cs)
	if err != nil {
		return refuse("the client certificate is not trusted: %v", err)
	}
	if peer.URA != partner {
		return refuse("the client certificate is organisation %s's, not %s's", peer.URA, partner)
	}
	if plateau < 3 {
		return nil
	}
	// What follows is refused to a connection that meets plateau 2.
	refuse = func(format string, args ...any) error {
		return &Refusal{Function: Network, Required: plateau, Delivered: 2, Partner: partner, Reason: fmt.Sprintf(format, args...)}
	}
	if peer.Route != pki.RouteCA {
		return refuse("network plateau %d admits certificates under the PKIoverheid/UZI CAs only; %s arrived with a bilaterally pinned certificate (%s)",
			plateau, partner, peer.PinName)
	}
	if cs.Version != tls.VersionTLS13 {
		return refuse("network plateau %d requires TLS 1.3; the connection uses %s", plateau, tls.VersionName(cs.Version))
	}
	if !slices.Contains(NEN7512Suites, cs.CipherSuite) {
		return refuse("network plateau %d allows the cipher suites %s; the connection uses %s",
			plateau, suiteNames(), tls.CipherSuiteName(cs.CipherSuite))
	}
	if err := c.Trust.CheckFreshCRL(peer); err != nil {
		return refuse("network plateau %d requires a fresh CRL for the client certificate's chain: %v", plateau, err)
	}
	return nil
}

func suiteNames() string {
	s := ""
	for i, id := range NEN7512Suites {
		if i > 0 {
			s += ", "
		}
		s += tls.CipherSuiteName(id)
	}
	return s
}
