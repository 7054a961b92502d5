package consent

import (
	"crypto/tls"
	"net"
	"syscall"
)

// connOpen reports whether the peer of conn is still there as far as this
// host knows, without sending anything: the socket has not been closed
// here, and no FIN, RST or unread data waits on it. A service that stopped
// has closed its connections, so a cached answer tied to one is not served
// again. Anything it cannot tell is "not open", so the cache fails closed.
func connOpen(conn net.Conn) bool {
	if tc, ok := conn.(*tls.Conn); ok {
		conn = tc.NetConn()
	}
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return false
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	open := false
	if err := raw.Control(func(fd uintptr) { open = peekIdle(fd) }); err != nil {
		return false // closed here already
	}
	return open
}
