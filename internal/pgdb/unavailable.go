package pgdb

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"io"
	"net"
	"reflect"
	"strings"
	"syscall"

	"github.com/jackc/pgx/v5/pgconn"
)

// Unavailable reports whether err means PostgreSQL could not be reached or
// went away (a restart, a failover, a dropped connection) rather than that
// it refused the statement: the request may succeed when tried again, so
// the edges answer 503. Only errors that come from the PostgreSQL driver
// count: a peer that cannot be reached over HTTP is not a store outage. A
// request its client cancelled is not PostgreSQL's doing either; one that
// timed out waiting for PostgreSQL is.
func Unavailable(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) {
		return false
	}
	if errors.Is(err, driver.ErrBadConn) || errors.Is(err, sql.ErrConnDone) {
		return true // database/sql's own words for a lost connection
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		// Class 08: connection exception; 57P01-57P03: the server is
		// shutting down, crashed, or not yet accepting connections.
		return strings.HasPrefix(pe.Code, "08") || pe.Code == "57P01" || pe.Code == "57P02" || pe.Code == "57P03"
	}
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) {
		return true
	}
	if !fromDriver(err) {
		return false
	}
	var ne net.Error
	switch {
	case errors.As(err, &ne), pgconn.Timeout(err), pgconn.SafeToRetry(err):
		return true
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return true
	case errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return true
	}
	// pgx reports a connection it closed after an earlier failure in words.
	return strings.Contains(err.Error(), "conn closed")
}

// pgconnPkg is the driver package whose (mostly unexported) error types
// mark an error as the connection's.
var pgconnPkg = reflect.TypeOf(pgconn.PgError{}).PkgPath()

// fromDriver reports whether an error in err's chain is one of the pgx
// driver's own.
func fromDriver(err error) bool {
	for _, e := range chain(err) {
		t := reflect.TypeOf(e)
		for t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		if strings.HasPrefix(t.PkgPath(), "github.com/jackc/pgx/") || t.PkgPath() == pgconnPkg {
			return true
		}
	}
	return false
}

// chain is err and everything it wraps, depth first.
func chain(err error) []error {
	var out []error
	var walk func(error)
	walk = func(e error) {
		if e == nil || len(out) > 64 {
			return
		}
		out = append(out, e)
		switch u := e.(type) {
		case interface{ Unwrap() error }:
			walk(u.Unwrap())
		case interface{ Unwrap() []error }:
			for _, x := range u.Unwrap() {
				walk(x)
			}
		}
	}
	walk(err)
	return out
}
