package validation

import (
	"net"
	"strconv"
	"testing"
)

// TestStablePortBelowEphemeralRange: the kit's port is free and below the
// range the system hands out to outgoing connections, so nothing takes it
// between the enrolment and the kit's run by chance.
func TestStablePortBelowEphemeralRange(t *testing.T) {
	low := ephemeralLow()
	for range 20 {
		addr, err := stablePort("127.0.0.1")
		if err != nil {
			t.Fatal(err)
		}
		_, p, _ := net.SplitHostPort(addr)
		port, _ := strconv.Atoi(p)
		if low > 20000 && (port < 20000 || port >= low) {
			t.Errorf("port %d, want in [20000, %d)", port, low)
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatalf("the chosen %s is not free: %v", addr, err)
		}
		ln.Close()
	}
}
