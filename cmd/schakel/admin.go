package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"
)

// nodeAdminClient talks to a running node's admin API (admin.addr).
type nodeAdminClient struct {
	node      string
	tokenFile string
	out       io.Writer
}

// The admin command's own defaults; not node configuration keys.
const (
	envAdminNode      = "SCHAKEL_ADMIN_NODE"
	envAdminTokenFile = "SCHAKEL_ADMIN_TOKEN_FILE"
)

func newAdminCommand() *cobra.Command {
	c := &nodeAdminClient{}
	cmd := &cobra.Command{
		Use:   "admin",
		Short: "Change a running node's agreements and participants through its admin API",
		Long: `Change a running node's agreements and participants through its admin API
(admin.addr, loopback only), without a restart: every change is checked as a
start-up would check it, audited with the operator, saved in the node's
datadir (runtime-changes.json, which wins over the configuration file for
the entries it names) and judges the next request.

Bodies are in the configuration file's shape (JSON or YAML), so an
agreement or participant copies between the file and the API unchanged.`,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			c.out = cmd.OutOrStdout()
			if c.node == "" {
				return errors.New("--node is required: the admin API's base URL, e.g. http://127.0.0.1:8444")
			}
			if c.tokenFile == "" {
				return errors.New("--token-file is required: a file holding your operator token")
			}
			return nil
		},
	}
	cmd.PersistentFlags().StringVar(&c.node, "node", os.Getenv(envAdminNode), "the node's admin API base URL (admin.addr); default $SCHAKEL_ADMIN_NODE")
	cmd.PersistentFlags().StringVar(&c.tokenFile, "token-file", os.Getenv(envAdminTokenFile),
		`file with your operator token (a line "<operator> <token>" of admin.tokenfile, or the token alone); default $SCHAKEL_ADMIN_TOKEN_FILE`)

	agreements := &cobra.Command{Use: "agreements", Short: "List, show, set and withdraw partner agreements"}
	var setFile, name string
	var plateaus []string
	var applications []string
	var systemIdentity string
	set := &cobra.Command{
		Use:   "set KEY",
		Short: "Create or change the agreement with a partner (KEY: its URA) or a collaboration (KEY: its name)",
		Example: `  schakel admin --node http://127.0.0.1:8444 --token-file ~/.schakel-admin \
      agreements set 00000002 --plateau authentication=2 --plateau authorization=2
  schakel admin ... agreements set "Regio Noord" --file regio-noord.yaml`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var body map[string]any
			if setFile != "" {
				var err error
				if body, err = readEntryFile(setFile); err != nil {
					return err
				}
			} else {
				// Start from the agreement as the node has it, so that the
				// flags change only what they name.
				status, b, err := c.do(cmd.Context(), http.MethodGet, "/admin/agreements/"+pathKey(args[0]), nil)
				switch {
				case err != nil:
					return err
				case status == http.StatusOK:
					if err := json.Unmarshal(b, &body); err != nil {
						return fmt.Errorf("the node's answer: %w", err)
					}
				case status == http.StatusNotFound:
					body = map[string]any{}
				default:
					return problem(status, b)
				}
			}
			if err := applyAgreementFlags(body, name, plateaus, applications, systemIdentity); err != nil {
				return err
			}
			return c.put(cmd.Context(), "/admin/agreements/"+pathKey(args[0]), body)
		},
	}
	set.Flags().StringVarP(&setFile, "file", "f", "", "the whole agreement, JSON or YAML in the shape of a partners.agreements entry")
	set.Flags().StringArrayVar(&plateaus, "plateau", nil, "function=plateau, e.g. authentication=2 (repeatable); changes the node's current agreement")
	set.Flags().StringVar(&name, "name", "", "the agreement's name")
	set.Flags().StringSliceVar(&applications, "applications", nil, "the care applications the partner may ask for, e.g. bgz")
	set.Flags().StringVar(&systemIdentity, "systemidentity", "", "true or false: may the participant's system stand in for a user (plateaus 2–3)")
	agreements.AddCommand(
		&cobra.Command{Use: "list", Short: "The node's agreements and default", Args: cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error { return c.show(cmd.Context(), "/admin/agreements") }},
		&cobra.Command{Use: "get KEY", Short: "One agreement", Args: cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				return c.show(cmd.Context(), "/admin/agreements/"+pathKey(args[0]))
			}},
		set,
		&cobra.Command{Use: "delete KEY", Short: "Withdraw an agreement: the partner is refused from the next request on", Args: cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				return c.remove(cmd.Context(), "/admin/agreements/"+pathKey(args[0]), "agreement "+args[0]+" withdrawn")
			}},
	)

	participants := &cobra.Command{Use: "participants", Short: "List, add and withdraw the participants the node serves"}
	var addFile string
	add := &cobra.Command{
		Use:   "add URA --file participant.yaml",
		Short: "Add a participant, or replace one (its credentials are loaded, its internal token works at once)",
		Long: `Add a participant, or replace one. The file is a participants entry of the
configuration file; the internal token is given as internaltokenfile (a file
on the node's host), never inline. Participants in proxy mode (ehr) take a
restart.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if addFile == "" {
				return errors.New("--file is required: the participant, JSON or YAML in the shape of a participants entry")
			}
			body, err := readEntryFile(addFile)
			if err != nil {
				return err
			}
			return c.put(cmd.Context(), "/admin/participants/"+pathKey(args[0]), body)
		},
	}
	add.Flags().StringVarP(&addFile, "file", "f", "", "the participant, JSON or YAML in the shape of a participants entry")
	participants.AddCommand(
		&cobra.Command{Use: "list", Short: "The participants the node serves (tokens left out)", Args: cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error { return c.show(cmd.Context(), "/admin/participants") }},
		&cobra.Command{Use: "get URA", Short: "One participant", Args: cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				return c.show(cmd.Context(), "/admin/participants/"+pathKey(args[0]))
			}},
		add,
		&cobra.Command{Use: "withdraw URA", Short: "Stop serving a participant: its internal token stops working at once; its data stays in the store",
			Args: cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				return c.remove(cmd.Context(), "/admin/participants/"+pathKey(args[0]), "participant "+args[0]+" withdrawn")
			}},
	)
	cmd.AddCommand(agreements, participants)
	return cmd
}

// pathKey escapes a key (a URA, or a collaboration's name) for the path.
func pathKey(k string) string { return url.PathEscape(k) }

// readEntryFile reads one configuration entry, YAML or JSON (YAML reads both).
func readEntryFile(file string) (map[string]any, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("--file: %w", err)
	}
	var m map[string]any
	if err := yaml.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("--file %s: %w", file, err)
	}
	if m == nil {
		return nil, fmt.Errorf("--file %s: empty", file)
	}
	return m, nil
}

// applyAgreementFlags changes body (an agreement in the configuration's
// shape) as the set command's flags say.
func applyAgreementFlags(body map[string]any, name string, plateaus, applications []string, systemIdentity string) error {
	if name != "" {
		body["name"] = name
	}
	if len(plateaus) > 0 {
		p, _ := body["plateaus"].(map[string]any)
		if p == nil {
			p = map[string]any{}
		}
		for _, kv := range plateaus {
			f, v, ok := strings.Cut(kv, "=")
			n, err := strconv.Atoi(v)
			if !ok || f == "" || err != nil {
				return fmt.Errorf("--plateau %q: want function=plateau, e.g. authentication=2", kv)
			}
			p[f] = n
		}
		body["plateaus"] = p
	}
	if len(applications) > 0 {
		body["applications"] = applications
	}
	if systemIdentity != "" {
		b, err := strconv.ParseBool(systemIdentity)
		if err != nil {
			return fmt.Errorf("--systemidentity: %w", err)
		}
		body["systemidentity"] = b
	}
	return nil
}

// token is the operator token: the last field of the file's first line
// that is not blank or a comment, so that a line of the node's
// admin.tokenfile works as it is.
func (c *nodeAdminClient) token() (string, error) {
	b, err := os.ReadFile(c.tokenFile)
	if err != nil {
		return "", fmt.Errorf("--token-file: %w", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		return f[len(f)-1], nil
	}
	return "", fmt.Errorf("--token-file %s: no token", c.tokenFile)
}

func (c *nodeAdminClient) do(ctx context.Context, method, path string, body any) (int, []byte, error) {
	token, err := c.token()
	if err != nil {
		return 0, nil, err
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimSuffix(c.node, "/")+path, rd)
	if err != nil {
		return 0, nil, fmt.Errorf("--node: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	hc := &http.Client{Timeout: 30 * time.Second}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("the node's admin API at %s: %w", c.node, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return 0, nil, fmt.Errorf("the node's admin API: %w", err)
	}
	return resp.StatusCode, b, nil
}

// problem is the error of a refused request: the problem details' detail.
func problem(status int, body []byte) error {
	var p struct {
		Detail string `json:"detail"`
	}
	if json.Unmarshal(body, &p) == nil && p.Detail != "" {
		return fmt.Errorf("refused (%d %s): %s", status, http.StatusText(status), p.Detail)
	}
	return fmt.Errorf("refused (%d %s)", status, http.StatusText(status))
}

func (c *nodeAdminClient) show(ctx context.Context, path string) error {
	status, b, err := c.do(ctx, http.MethodGet, path, nil)
	if err != nil {
		return err
	}
	if status != http.StatusOK {
		return problem(status, b)
	}
	_, err = c.out.Write(b)
	return err
}

func (c *nodeAdminClient) put(ctx context.Context, path string, body any) error {
	status, b, err := c.do(ctx, http.MethodPut, path, body)
	if err != nil {
		return err
	}
	if status != http.StatusOK && status != http.StatusCreated {
		return problem(status, b)
	}
	_, err = c.out.Write(b)
	return err
}

func (c *nodeAdminClient) remove(ctx context.Context, path, done string) error {
	status, b, err := c.do(ctx, http.MethodDelete, path, nil)
	if err != nil {
		return err
	}
	if status != http.StatusNoContent {
		return problem(status, b)
	}
	_, err = fmt.Fprintln(c.out, done)
	return err
}
