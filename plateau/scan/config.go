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
	"os"
	"sort"

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

// settingKeys are the node's keys whose presence is evidence: its consent
// sources (local registry, regional portal, Mitz) and Mitz subscriptions,
// the referral index, and audit settings.
var settingKeys = []string{
	"consent.local", "consent.regional.url", "consent.url", "consent.subscribe", "consent.notifierura",
	"localization.url",
	"audit.retention", "audit.export", "audit.monitoring",
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
	// Any other audit.* key counts as audit settings too.
	for _, key := range k.Keys() {
		if len(key) > 6 && key[:6] == "audit." {
			c.settings[key] = k.String(key)
		}
	}
	return &c, nil
}

// setting returns the first of keys that is set.
func (c *NodeConfig) setting(keys ...string) (string, string, bool) {
	for _, k := range keys {
		if v, ok := c.settings[k]; ok && v != "" {
			return k, v, true
		}
	}
	return "", "", false
}

func (c *NodeConfig) auditKeys() []string {
	var out []string
	for k := range c.settings {
		if len(k) > 6 && k[:6] == "audit." {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
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
