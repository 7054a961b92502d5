package node

import (
	"context"
	"net"
	"net/http"
	"net/netip"
	"testing"
	"time"

	"github.com/pires/go-proxyproto"

	"github.com/schakel-nl/schakel/audit"
)

// TestProxyProtocol: behind a load balancer that passes connections
// through at layer 4, the node audits the client's address from the
// balancer's PROXY header, not the balancer's; a connection from the
// balancer without the header is refused, a header from anyone else is not
// honoured, and anyone else connecting directly (a probe) is served.
func TestProxyProtocol(t *testing.T) {
	e := newEdgeEnv(t, func(c *Config) {
		c.Public.ProxyProtocol = []string{"127.0.0.1/32"}
		c.Internal.ProxyProtocol = []string{"127.0.0.1"}
	})
	// through is a client whose connections start with a PROXY v2 header
	// naming source as the client.
	through := func(base *http.Client, source string, from ...net.Addr) *http.Client {
		tr := &http.Transport{}
		if bt, ok := base.Transport.(*http.Transport); ok {
			tr = bt.Clone()
		}
		src := netip.MustParseAddrPort(source)
		tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
			d := &net.Dialer{}
			if len(from) > 0 {
				d.LocalAddr = from[0]
			}
			c, err := d.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			h := proxyproto.HeaderProxyFromAddrs(2, net.TCPAddrFromAddrPort(src), c.RemoteAddr())
			if _, err := h.WriteTo(c); err != nil {
				c.Close()
				return nil, err
			}
			return c, nil
		}
		t.Cleanup(tr.CloseIdleConnections)
		return &http.Client{Timeout: 10 * time.Second, Transport: tr}
	}
	addressOf := func(outcomeText string) string {
		t.Helper()
		recs, err := e.n.Audit().List(context.Background(), audit.Filter{})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range recs {
			if r.OutcomeText == outcomeText {
				return r.Address
			}
		}
		t.Fatalf("no audit record %q", outcomeText)
		return ""
	}

	// The public listener: a partner's request without a token, audited.
	resp, _ := do(t, through(e.public, "192.0.2.7:4711"), http.MethodGet, e.n.PublicURL()+"/fhir/stu3/"+edgeURA1+"/Patient", nil, nil)
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("public request through the balancer: %s", resp.Status)
	}
	if got := addressOf("no valid access token"); got != "192.0.2.7:4711" {
		t.Errorf("public: audited address %q, want the client's 192.0.2.7:4711", got)
	}
	// The internal listener: a system's request with a wrong token.
	resp, _ = do(t, through(e.internal, "198.51.100.9:5555"), http.MethodGet, e.n.InternalURL()+"/internal/referrals",
		http.Header{"Authorization": {"Bearer not-a-token-of-anyone"}}, nil)
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("internal request through the balancer: %s", resp.Status)
	}
	if got := addressOf("no valid internal API token"); got != "198.51.100.9:5555" {
		t.Errorf("internal: audited address %q, want the client's 198.51.100.9:5555", got)
	}
	// A header from an address that is not a trusted balancer: refused.
	other := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}
	req, _ := http.NewRequest(http.MethodGet, e.n.PublicURL()+"/healthz", nil)
	if resp, err := through(e.public, "192.0.2.8:4712", other).Do(req); err == nil {
		resp.Body.Close()
		t.Errorf("a PROXY header from %s, not a trusted balancer, was served: %s", other.IP, resp.Status)
	}
	// Directly, from another address, without a header: served.
	direct := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: (&net.Dialer{LocalAddr: other}).DialContext}}
	defer direct.CloseIdleConnections()
	if resp, _ := do(t, direct, http.MethodGet, e.n.InternalURL()+"/healthz", nil, nil); resp.StatusCode != http.StatusOK {
		t.Errorf("a direct connection from %s: %s", other.IP, resp.Status)
	}
	// From the balancer's address without a header: refused.
	for name, c := range map[string]*http.Client{"public": e.public, "internal": e.internal} {
		base := e.n.PublicURL()
		if name == "internal" {
			base = e.n.InternalURL()
		}
		req, _ := http.NewRequest(http.MethodGet, base+"/healthz", nil)
		if resp, err := c.Do(req); err == nil {
			resp.Body.Close()
			t.Errorf("%s: a connection without the PROXY header was served: %s", name, resp.Status)
		}
	}
}
