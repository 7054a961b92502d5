package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"text/tabwriter"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/spf13/cobra"

	"github.com/schakel-nl/schakel/audit"
	"github.com/schakel-nl/schakel/pki"
)

// newAuditFetchCommand returns `schakel audit fetch`: a partner asks a node
// for the audit records of its own requests (logging plateau 1–2) and
// verifies the signed export.
func newAuditFetchCommand() *cobra.Command {
	var node, jwksFile, out string
	var tlsf mtlsFlags
	var after int64
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "fetch",
		Short: "Fetch and verify a node's signed export of your own organisation's audit records",
		Long: "Asks the node at --node (its public URL) over mTLS for the audit records of the requests\n" +
			"your organisation made (the URA of --cert), pages through all of them after --after, and\n" +
			"verifies each export: the signature with the node's checkpoint key, every record's hash,\n" +
			"that every record is yours, and the checkpoint. --jwks pins the node's checkpoint key\n" +
			"(a JWK Set obtained out of band); without it the key is read from the node itself\n" +
			"(GET /audit/jwks over the same mTLS connection), and the output says so.\n" +
			"--out keeps the raw signed exports (one per line) as evidence.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cmd.SilenceUsage = true
			if node == "" || !tlsf.set() {
				return errors.New("--node, --cert, --key and --ca are required")
			}
			cert, roots, err := tlsf.load()
			if err != nil {
				return err
			}
			leaf, err := leafOf(cert)
			if err != nil {
				return err
			}
			id, err := pki.ParseUZIServerID(leaf)
			if err != nil {
				return fmt.Errorf("--cert: %w", err)
			}
			hc := &http.Client{Timeout: time.Minute, Transport: &http.Transport{TLSClientConfig: pki.ClientTLSConfig(cert, roots)}}
			defer hc.CloseIdleConnections()
			var keys jwk.Set
			keyNote := "checkpoint key pinned from " + jwksFile
			if jwksFile != "" {
				data, err := os.ReadFile(jwksFile)
				if err != nil {
					return fmt.Errorf("--jwks: %w", err)
				}
				if keys, err = jwk.Parse(data); err != nil {
					return fmt.Errorf("--jwks: %w", err)
				}
			} else {
				if keys, err = audit.FetchExportKeys(cmd.Context(), hc, node); err != nil {
					return err
				}
				keyNote = "checkpoint key read from the node (not pinned: use --jwks)"
			}
			var raw *os.File
			if out != "" {
				if raw, err = os.OpenFile(out, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600); err != nil {
					return fmt.Errorf("--out: %w", err)
				}
				defer raw.Close()
			}
			var records []audit.Record
			var anchored int64
			for range 100000 { // bounded: 10^8 records
				compact, err := audit.FetchExport(cmd.Context(), hc, node, after)
				if err != nil {
					return err
				}
				v, err := audit.VerifyExport(compact, keys, id.URA)
				if err != nil {
					return err
				}
				if raw != nil {
					if _, err := fmt.Fprintln(raw, compact); err != nil {
						return fmt.Errorf("--out: %w", err)
					}
				}
				records = append(records, v.Records...)
				anchored = max(anchored, v.AnchoredThrough)
				if !v.More || len(v.Records) == 0 {
					break
				}
				after = v.Records[len(v.Records)-1].Seq
			}
			w := cmd.OutOrStdout()
			if asJSON {
				enc := json.NewEncoder(w)
				enc.SetIndent("", "  ")
				return enc.Encode(map[string]any{"ura": id.URA, "verified": true, "keys": keyNote,
					"anchoredThrough": anchored, "records": records})
			}
			fmt.Fprintf(w, "%d record(s) of URA %s, verified (%s); chain anchored by a signed checkpoint through seq %d\n",
				len(records), id.URA, keyNote, anchored)
			tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "SEQ\tTIME\tINTERACTION\tOUTCOME\tTENANT\tPATIENT\tUSER\tQUERY")
			for _, r := range records {
				fmt.Fprintf(tw, "%d\t%s\t%s\t%d\t%s\t%s\t%s\t%s\n", r.Seq, r.Time.UTC().Format(time.RFC3339), r.Interaction,
					r.Outcome, r.Tenant, r.Patient, r.ActorUser, r.Query)
			}
			return tw.Flush()
		},
	}
	f := cmd.Flags()
	f.StringVar(&node, "node", "", "public URL of the node, e.g. https://gtk.example:8443")
	tlsf.flags(f, "your organisation (its URA selects the records)", "the node's certificate chains to")
	f.StringVar(&jwksFile, "jwks", "", "JWK Set with the node's public checkpoint key, pinned out of band")
	f.Int64Var(&after, "after", 0, "only records after this seq (the last one you already have)")
	f.StringVar(&out, "out", "", "file to keep the raw signed exports in")
	f.BoolVar(&asJSON, "json", false, "print the verified records as JSON")
	return cmd
}

// leafOf is the parsed leaf of a loaded certificate.
func leafOf(cert tls.Certificate) (*x509.Certificate, error) {
	if cert.Leaf != nil {
		return cert.Leaf, nil
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		return nil, fmt.Errorf("--cert: %w", err)
	}
	return leaf, nil
}
