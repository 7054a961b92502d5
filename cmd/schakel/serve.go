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

	"github.com/spf13/pflag"

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

// mtlsFlags are the flags of a command's mTLS side: its UZI server
// certificate and key (--cert, --key), and the CAs (--ca) of the parties it
// trusts.
type mtlsFlags struct {
	cert, key string
	cas       []string
}

// flags registers --cert, --key and --ca on f: whose certificate it is,
// and whom the CAs are trusted for.
func (s *mtlsFlags) flags(f *pflag.FlagSet, whose, trusted string) {
	f.StringVar(&s.cert, "cert", "", "PEM UZI server certificate of "+whose)
	f.StringVar(&s.key, "key", "", "PEM private key of --cert")
	f.StringSliceVar(&s.cas, "ca", nil, "PEM file(s) of the CA(s) "+trusted+" (repeatable)")
}

// set reports whether --cert, --key and --ca are all given.
func (s *mtlsFlags) set() bool { return s.cert != "" && s.key != "" && len(s.cas) > 0 }

// load reads --cert and --key and the --ca files, naming the flag of a
// file at fault.
func (s *mtlsFlags) load() (tls.Certificate, *x509.CertPool, error) {
	cert, err := loadCertFlags(s.cert, s.key)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	roots, err := loadCAs(s.cas...)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	return cert, roots, nil
}
