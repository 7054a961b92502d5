package node

import (
	"net"
	"time"

	"github.com/pires/go-proxyproto"
)

// proxyHeaderTimeout bounds how long a connection from a load balancer may
// take to send its PROXY header.
const proxyHeaderTimeout = 5 * time.Second

// proxyPolicy is the policy of a listener whose load balancers are
// trusted (ListenerConfig.ProxyProtocol): a connection from one of them
// must start with a PROXY header; one from anywhere else (a probe, a
// system connecting directly) is taken as it is, its peer the client, and
// a header it sends is not read (so it fails as the garbage it is). Nil
// without any balancer.
func proxyPolicy(trusted []string) (proxyproto.ConnPolicyFunc, error) {
	if len(trusted) == 0 {
		return nil, nil
	}
	return proxyproto.PolicyFromRanges(trusted, proxyproto.REQUIRE, proxyproto.SKIP)
}

// withProxyProtocol wraps ln so that its connections' remote address is
// the client's, from the PROXY header its load balancer sends; ln itself
// when no balancer is trusted.
func withProxyProtocol(ln net.Listener, trusted []string) (net.Listener, error) {
	policy, err := proxyPolicy(trusted)
	if err != nil || policy == nil {
		return ln, err
	}
	return &proxyproto.Listener{Listener: ln, ConnPolicy: policy, ReadHeaderTimeout: proxyHeaderTimeout}, nil
}
