package network

import (
	"strings"
	"testing"
)

// TestBalancerConfig: the public listener passes TLS through at layer 4 to
// every replica, checked on its internal /healthz; the internal listener is
// balanced per request and names the replica that answered.
func TestBalancerConfig(t *testing.T) {
	b := balancer{name: "gp-node", public: "127.0.0.1:4000", internal: "127.0.0.1:4001", servers: []backendServer{
		{name: "gp-node-1", public: "127.0.0.1:5000", internal: "127.0.0.1:5001"},
		{name: "gp-node-2", public: "127.0.0.1:6000", internal: "127.0.0.1:6001"},
	}}
	cfg := b.config()
	public, internal, ok := strings.Cut(cfg, "frontend gp-node_internal")
	if !ok {
		t.Fatalf("no internal frontend:\n%s", cfg)
	}
	for _, want := range []string{
		"bind 127.0.0.1:4000", "mode tcp", "balance roundrobin", "http-check send meth GET uri /healthz",
		"server gp-node-1 127.0.0.1:5000 check port 5001", "server gp-node-2 127.0.0.1:6000 check port 6001",
	} {
		if !strings.Contains(public, want) {
			t.Errorf("public part lacks %q:\n%s", want, public)
		}
	}
	// A stopping replica drains until the balancer can have seen three
	// failed checks: the first within inter, the next two fastinter apart.
	if want := "default-server inter 1000ms fastinter 250ms fall 3 rise 2"; !strings.Contains(cfg, want) {
		t.Errorf("defaults lack %q:\n%s", want, cfg)
	}
	if out := replicaCheckInterval + 2*replicaFastCheck; replicaDrain <= out {
		t.Errorf("replicas drain %s, the balancer may take %s to take one out", replicaDrain, out)
	}
	for _, unwanted := range []string{"ssl", "crt "} {
		if strings.Contains(cfg, unwanted) {
			t.Errorf("the balancer must not terminate TLS, found %q:\n%s", unwanted, cfg)
		}
	}
	for _, want := range []string{
		"bind 127.0.0.1:4001", "mode http", "http-response set-header " + ReplicaHeader + " %[srv_name]",
		"server gp-node-1 127.0.0.1:5001 check", "server gp-node-2 127.0.0.1:6001 check",
	} {
		if !strings.Contains(internal, want) {
			t.Errorf("internal part lacks %q:\n%s", want, internal)
		}
	}
}

// TestReplicasRefusedWithoutPrerequisites: replicas need PostgreSQL and
// HAProxy, and say so before anything starts.
func TestReplicasRefusedWithoutPrerequisites(t *testing.T) {
	if err := checkReplicas(Options{Replicas: 2}); err == nil || !strings.Contains(err.Error(), "--postgres") {
		t.Errorf("replicas without PostgreSQL: %v", err)
	}
	t.Setenv("PATH", t.TempDir()) // no haproxy on it
	err := checkReplicas(Options{Replicas: 2, Postgres: "postgres://127.0.0.1/x"})
	if err == nil || !strings.Contains(err.Error(), "apt-get install haproxy") {
		t.Errorf("replicas without haproxy: %v", err)
	}
	if _, err := UpProcesses(t.Context(), Options{DataDir: t.TempDir(), Replicas: 2, Postgres: "postgres://127.0.0.1/x"}, "schakel"); err == nil {
		t.Error("UpProcesses started replicas without haproxy")
	}
}
