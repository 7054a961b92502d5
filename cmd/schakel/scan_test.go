package main

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/schakel-nl/schakel/plateau/scan"
)

// configKey is how a report spells a configuration key: dotted, lower case,
// starting with one of the node's sections.
var configKey = regexp.MustCompile(`\b(?:consent|localization|audit|partners|tls|public|addressbook|trust|store)(?:\.[a-z]+|\.\*|\[\])+`)

// The node refuses keys it does not read, so every key the scan's evidence
// and steps name must be one the node reads: advice to set anything else
// would stop the node from starting.
func TestScanNamesOnlyKeysTheNodeReads(t *testing.T) {
	dir := t.TempDir()
	var texts []string
	for i, cfg := range []string{
		"name: n\ndatadir: " + dir + "\n",
		"name: n\ndatadir: " + dir + "\naudit:\n  checkpointkeyfile: " + filepath.Join(dir, "missing.pem") + "\nconsent:\n  url: \"\"\n  subscribe: true\n",
	} {
		file := filepath.Join(dir, fmt.Sprintf("node%d.yaml", i))
		if err := os.WriteFile(file, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := scan.LoadConfig(file)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range scan.Run(c, file, nil).Functions {
			for _, e := range f.Evidence {
				texts = append(texts, e.Text)
			}
			if f.Next != nil {
				texts = append(texts, f.Next.Steps...)
			}
		}
	}
	seen := 0
	for _, text := range texts {
		for _, loc := range configKey.FindAllStringIndex(text, -1) {
			if loc[0] > 0 && text[loc[0]-1] == '/' {
				continue // a file name in a path, e.g. <datadir>/audit.db
			}
			seen++
			key, _, _ := strings.Cut(text[loc[0]:loc[1]], "[]")
			if _, known, err := nodeKeys.lookup(key); err != nil {
				t.Errorf("the scan names %q, which the node does not read (known up to %q): %s", key, known, text)
			}
		}
	}
	if seen < 5 {
		t.Fatalf("only %d keys found in the report; is the pattern right?", seen)
	}
}
