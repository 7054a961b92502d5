package main

import (
	"crypto/x509"
	"fmt"

	"context"
	"errors"
	"github.com/schakel-nl/schakel/pki"
	"net"
	"net/http"
	"time"
)

// serveUntilDone serves hs on ln until ctx ends, then shuts it down
// gracefully (requests in flight get 10 s). Every service command uses it.
func serveUntilDone(ctx context.Context, hs *http.Server, ln net.Listener) error {
	errc := make(chan error, 1)
	go func() { errc <- hs.ServeTLS(ln, "", "") }()
	select {
	case err := <-errc:
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return hs.Shutdown(sctx)
}

// loadCAs reads the --ca files of a command into a pool.
func loadCAs(files ...string) (*x509.CertPool, error) {
	pool, err := pki.LoadCertPool(files...)
	if err != nil {
		return nil, fmt.Errorf("--ca: %w", err)
	}
	return pool, nil
}
