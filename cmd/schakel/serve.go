package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/schakel-nl/schakel/pki"
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

// loadCertFlags loads the --cert and --key files of a command, naming the
// flag of the file at fault.
func loadCertFlags(certFile, keyFile string) (tls.Certificate, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("--cert: %w", err)
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("--key: %w", err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("--cert %s and --key %s: %w", certFile, keyFile, err)
	}
	return cert, nil
}

// listenAddr binds a command's --addr.
func listenAddr(addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--addr: %w", err)
	}
	return ln, nil
}

// prepareDataDir creates a command's --data-dir, so that a path that cannot
// be a directory is reported as that flag's fault before anything opens.
func prepareDataDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("--data-dir: %w", err)
	}
	return nil
}

// mtlsServer is a service's HTTP server on the mTLS listener: the trust of
// roots, its own certificate, header and body timeouts (rw for reading and
// writing a whole request), refused handshakes logged at WARN.
func mtlsServer(h http.Handler, cert tls.Certificate, roots *x509.CertPool, log *slog.Logger, rw time.Duration) *http.Server {
	return &http.Server{
		Handler:           h,
		TLSConfig:         pki.ServerTLSConfig(cert, roots),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       rw,
		WriteTimeout:      rw,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
}
