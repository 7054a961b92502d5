// Package scan is the maturity scan (volwassenheidsscan): from a node's
// configuration and, optionally, what a running node shows over the network,
// it reports per generic function the plateau reached, the evidence, and
// the concrete steps to the next plateau.
package scan

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/knadh/koanf/parsers/yaml"
	"github.com/knadh/koanf/providers/file"
	"github.com/knadh/koanf/v2"

	"github.com/schakel-nl/schakel/plateau"
)

// NodeConfig mirrors the parts of the node's configuration file the scan
// reads. It is its own struct so the scan can read a configuration the node
// would refuse, and report why.
type NodeConfig struct {
	Name           string         `koanf:"name"`
	DataDir        string         `koanf:"datadir"`
	Public         listenerConfig `koanf:"public"`
	TLS            tlsConfig      `koanf:"tls"`
	AddressbookURL string         `koanf:"addressbookurl"`
	Addressbook    struct {
		Directories []struct {
			Name string `koanf:"name"`
			URL  string `koanf:"url"`
		} `koanf:"directories"`
	} `koanf:"addressbook"`
	Participants []participant  `koanf:"participants"`
	Partners     plateau.Config `koanf:"partners"`

	// Settings of other components the scan looks for by key, present or
	// not: see docs/plateaus.md for the keys.
	settings map[string]string
}

type listenerConfig struct {
	Addr string `koanf:"addr"`
	URL  string `koanf:"url"`
}

type tlsConfig struct {
	CertFile string   `koanf:"certfile"`
	KeyFile  string   `koanf:"keyfile"`
	CAFiles  []string `koanf:"cafiles"`
}

type participant struct {
	URA       string `koanf:"ura"`
	Name      string `koanf:"name"`
	SystemUZI string `koanf:"systemuzi"`
}

// settingKeys are the keys of other components the node reads that the
// scan judges: its consent sources (local registry, regional portal, Mitz)
// and Mitz subscriptions, the referral index, and the audit log's
// checkpoint key. Only keys the node reads belong here: it refuses any
// other, so advice to set one would break the node.
var settingKeys = []string{
	"consent.local", "consent.regional.url", "consent.url", "consent.subscribe", "consent.notifierura",
	"localization.url",
	"audit.checkpointkeyfile",
}

// LoadConfig reads a node configuration file (YAML).
func LoadConfig(path string) (*NodeConfig, error) {
	k := koanf.New(".")
	if err := k.Load(file.Provider(path), yaml.Parser()); err != nil {
		return nil, fmt.Errorf("configuration %s: %w", path, err)
	}
	var c NodeConfig
	if err := k.UnmarshalWithConf("", &c, koanf.UnmarshalConf{Tag: "koanf"}); err != nil {
		return nil, fmt.Errorf("configuration %s: %w", path, err)
	}
	c.settings = map[string]string{}
	for _, key := range settingKeys {
		if k.Exists(key) {
			c.settings[key] = k.String(key)
		}
	}
	return &c, nil
}

// setting returns the first of keys that is set to a value: a key that is
// present but empty is no evidence of anything.
func (c *NodeConfig) setting(keys ...string) (string, string, bool) {
	for _, k := range keys {
		if v, ok := c.settings[k]; ok && strings.TrimSpace(v) != "" {
			return k, v, true
		}
	}
	return "", "", false
}

// serviceURL returns the first of keys set to an absolute https URL, or
// why none is: the node calls these services over mTLS, so anything else
// is a value the node would fail on, not evidence.
func (c *NodeConfig) serviceURL(keys ...string) (key, value, fault string) {
	for _, k := range keys {
		_, v, ok := c.setting(k)
		if !ok {
			continue
		}
		u, err := url.Parse(v)
		if err != nil || u.Scheme != "https" || u.Host == "" {
			fault = fmt.Sprintf("%s is %q, not an https URL", k, v)
			continue
		}
		return k, v, ""
	}
	if fault == "" {
		fault = strings.Join(keys, " and ") + " not set"
	}
	return "", "", fault
}

// checkpointKey says where the audit log's checkpoint signing key is and
// whether it is usable: a configured file must hold a private key the node
// can sign with; without one the node creates <datadir>/audit-checkpoint-key.pem.
func (c *NodeConfig) checkpointKey() (ok bool, text string) {
	path, set := c.settings["audit.checkpointkeyfile"]
	if !set || strings.TrimSpace(path) == "" {
		if c.DataDir == "" {
			return false, "no checkpoint key: audit.checkpointkeyfile and datadir are both unset"
		}
		p := filepath.Join(c.DataDir, "audit-checkpoint-key.pem")
		if _, err := os.Stat(p); err == nil {
			if err := readSigningKey(p); err != nil {
				return false, "the checkpoint key " + p + " is unusable: " + err.Error()
			}
			return true, "checkpoints are signed with " + p
		}
		return true, "checkpoints will be signed with a key the node creates at " + p
	}
	if err := readSigningKey(path); err != nil {
		return false, "audit.checkpointkeyfile " + path + " is not a usable signing key: " + err.Error()
	}
	return true, "checkpoints are signed with audit.checkpointkeyfile " + path
}

// readSigningKey checks that path holds a PEM private key, without ever
// creating one (the node's loader would).
func readSigningKey(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return errors.Unwrap(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil || !strings.Contains(blk.Type, "PRIVATE KEY") {
		return errors.New("no PEM private key in it")
	}
	for _, parse := range []func([]byte) (any, error){
		x509.ParsePKCS8PrivateKey,
		func(d []byte) (any, error) { return x509.ParseECPrivateKey(d) },
		func(d []byte) (any, error) { return x509.ParsePKCS1PrivateKey(d) },
	} {
		if _, err := parse(blk.Bytes); err == nil {
			return nil
		}
	}
	return errors.New("the PEM block is not a private key")
}

// leafCertificate reads the first certificate of the node's certificate file.
func leafCertificate(path string) (*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, errors.New("no PEM certificate in " + path)
	}
	return x509.ParseCertificate(blk.Bytes)
}

// addressbooks are the addressbook URLs the node resolves endpoints with:
// the live one, or the directories it keeps replicas of.
func (c *NodeConfig) addressbooks() []string {
	var out []string
	if c.AddressbookURL != "" {
		out = append(out, c.AddressbookURL)
	}
	for _, d := range c.Addressbook.Directories {
		out = append(out, d.URL)
	}
	return out
}
