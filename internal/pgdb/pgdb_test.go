package pgdb

import (
	"strings"
	"testing"
	"time"
)

func TestRebind(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`SELECT 1`, `SELECT 1`},
		{`SELECT a FROM t WHERE b = ?`, `SELECT a FROM t WHERE b = $1`},
		{`INSERT INTO t VALUES (?,?,?,?,?,?,?,?,?,?,?)`, `INSERT INTO t VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11)`},
	} {
		if got := Rebind(tc.in); got != tc.want {
			t.Errorf("Rebind(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// TestPoolConfig: a pool's connections get ConnectTimeout unless the DSN
// sets its own, and a DSN that does not parse is refused without being
// echoed (it may hold a password).
func TestPoolConfig(t *testing.T) {
	cfg, err := PoolConfig("postgres://u:secret@127.0.0.1:5432/x?sslmode=disable")
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.ConnConfig.ConnectTimeout; got != ConnectTimeout {
		t.Errorf("connect timeout %s, want %s", got, ConnectTimeout)
	}
	cfg, err = PoolConfig("postgres://u:secret@127.0.0.1:5432/x?sslmode=disable&connect_timeout=2")
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.ConnConfig.ConnectTimeout; got != 2*time.Second {
		t.Errorf("connect timeout %s, want the DSN's 2s", got)
	}
	_, err = PoolConfig("postgres://u:secret@127.0.0.1:notaport/x")
	if err == nil || strings.Contains(err.Error(), "secret") {
		t.Errorf("bad DSN: %v", err)
	}
}
