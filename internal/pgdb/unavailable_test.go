package pgdb

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

func TestUnavailable(t *testing.T) {
	httpErr := &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"admin shutdown", fmt.Errorf("query: %w", &pgconn.PgError{Code: "57P01"}), true},
		{"cannot connect now", &pgconn.PgError{Code: "57P03"}, true},
		{"connection failure", &pgconn.PgError{Code: "08006"}, true},
		{"unique violation", &pgconn.PgError{Code: "23505"}, false},
		{"bad conn", fmt.Errorf("exec: %w", driver.ErrBadConn), true},
		{"cancelled", fmt.Errorf("x: %w", context.Canceled), false},
		// A peer over HTTP that cannot be reached is no store outage.
		{"peer unreachable", fmt.Errorf("notify: %w", &url.Error{Op: "Post", URL: "https://peer/Task", Err: httpErr}), false},
		{"peer EOF", fmt.Errorf("notify: %w", &url.Error{Op: "Post", URL: "https://peer/Task", Err: io.ErrUnexpectedEOF}), false},
		{"connection ended", fmt.Errorf("postgres store: %w", io.ErrUnexpectedEOF), true},
		{"connection refused", fmt.Errorf("begin: %w", httpErr), true},
	} {
		if got := Unavailable(tc.err); got != tc.want {
			t.Errorf("%s: Unavailable(%v) = %v, want %v", tc.name, tc.err, got, tc.want)
		}
	}
}

// TestUnavailableFromDriver: what pgx itself returns when nothing listens
// where PostgreSQL should.
func TestUnavailableFromDriver(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = pgx.Connect(ctx, "postgres://postgres@"+addr+"/x?sslmode=disable")
	if err == nil {
		t.Fatal("connected to a closed port")
	}
	if !Unavailable(err) {
		t.Errorf("Unavailable(%v) = false", err)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("refused connection took the whole deadline: %v", err)
	}
}

// TestConnectTimeout: a server that accepts connections but never answers
// (an address lost in a failover) fails the open after ConnectTimeout, as
// unavailable, instead of holding it for as long as its context allows.
func TestConnectTimeout(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close() // held open, silent
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	_, err = Open(ctx, "postgres://postgres@"+ln.Addr().String()+"/x?sslmode=disable", "s", "t_goose", nil)
	if err == nil {
		t.Fatal("opened a database on a silent server")
	}
	// Not the caller's deadline: the connect timeout ended it.
	if ctx.Err() != nil || !Unavailable(err) {
		t.Fatalf("%v (caller's context: %v, unavailable: %v)", err, ctx.Err(), Unavailable(err))
	}
}
