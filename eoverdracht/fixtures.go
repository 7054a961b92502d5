package eoverdracht

import (
	"embed"
	"encoding/json"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/schakel-nl/schakel/fhir"
	fhirxml "github.com/schakel-nl/schakel/fhir/xml"
)

// The Nictiz eOverdracht 4.0 qualification fixtures of scenario 1.1b (a
// transfer from a hospital's nursing ward to home care: aanmeldbericht,
// then overdrachtbericht), from github.com/Nictiz/Nictiz-testscripts,
// src/eOverdracht-4-0/Test/_reference/resources (commit 5580797184177fd7),
// published by Nictiz as public qualification material; see
// testdata/nictiz/SOURCE.
//
//go:embed testdata/nictiz/*.xml
var fixtures embed.FS

// Demo scenario ids: the documents of scenario 1.1b.
const (
	DemoAdvanceNotice  = "Composition/eOverdracht-AdvanceNotice-eov-test-1-1b-01"
	DemoNursingHandoff = "Composition/eOverdracht-NursingHandoff-Adults-eov-test-1-1b-01"
	// DemoPatientBSN is the scenario's patient (Erik XXX_Altenborg).
	DemoPatientBSN = "999911612"
)

// placeholder is the Nictiz testscripts' variable syntax: ${CURRENTDATE},
// ${DATE, T, d|y, ±N}, ${CD6}, ${task-id}.
var placeholder = regexp.MustCompile(`\$\{([^}]*)\}`)

// expand replaces the fixtures' variables: dates relative to now, and
// identifiers with tag.
func expand(xml []byte, now time.Time, tag string) ([]byte, error) {
	var bad error
	out := placeholder.ReplaceAllFunc(xml, func(m []byte) []byte {
		v := strings.TrimSpace(string(m[2 : len(m)-1]))
		switch {
		case v == "CURRENTDATE":
			return []byte(now.Format("2006-01-02"))
		case v == "CD6" || v == "task-id":
			return []byte(tag)
		case strings.HasPrefix(v, "DATE,"):
			f := strings.Split(v, ",")
			if len(f) != 4 {
				break
			}
			n, err := strconv.Atoi(strings.TrimSpace(f[3]))
			if err != nil {
				break
			}
			switch strings.TrimSpace(f[2]) {
			case "d":
				return []byte(now.AddDate(0, 0, n).Format("2006-01-02"))
			case "y":
				return []byte(now.AddDate(n, 0, 0).Format("2006-01-02"))
			}
		}
		if bad == nil {
			bad = fmt.Errorf("unknown fixture variable %s", m)
		}
		return m
	})
	return out, bad
}

// Fixture is one resource of the Nictiz fixtures, as FHIR STU3 JSON.
type Fixture struct {
	File     string
	Type, ID string
	Body     json.RawMessage
}

// Fixtures are the scenario's fixtures, dates relative to now; tasks
// says whether the workflow Task fixtures (the status steps of the
// scenario) are included.
func Fixtures(now time.Time, tasks bool) ([]Fixture, error) {
	names, err := fs.Glob(fixtures, "testdata/nictiz/*.xml")
	if err != nil {
		return nil, err
	}
	sort.Strings(names)
	var out []Fixture
	for _, n := range names {
		isTask := strings.HasPrefix(path.Base(n), "eOverdracht-Task-")
		if isTask && !tasks {
			continue
		}
		raw, err := fixtures.ReadFile(n)
		if err != nil {
			return nil, err
		}
		x, err := expand(raw, now, "demo")
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path.Base(n), err)
		}
		body, err := fhirxml.Decode(fhir.STU3, x)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path.Base(n), err)
		}
		var head struct {
			ResourceType string `json:"resourceType"`
			ID           string `json:"id"`
		}
		if err := json.Unmarshal(body, &head); err != nil || head.ResourceType == "" || head.ID == "" {
			return nil, fmt.Errorf("%s: no resourceType and id", path.Base(n))
		}
		out = append(out, Fixture{File: path.Base(n), Type: head.ResourceType, ID: head.ID, Body: body})
	}
	return out, nil
}

// DemoRecord is the sending system's record of the demo transfer: the
// scenario's resources (not its Tasks: the node builds the workflow Task),
// as a FHIR transaction Bundle of PUTs, for the importer.
func DemoRecord(now time.Time) ([]byte, error) {
	fx, err := Fixtures(now, false)
	if err != nil {
		return nil, err
	}
	type request struct {
		Method string `json:"method"`
		URL    string `json:"url"`
	}
	type entry struct {
		FullURL  string          `json:"fullUrl"`
		Resource json.RawMessage `json:"resource"`
		Request  request         `json:"request"`
	}
	b := struct {
		ResourceType string  `json:"resourceType"`
		Type         string  `json:"type"`
		Entry        []entry `json:"entry"`
	}{ResourceType: "Bundle", Type: "transaction"}
	for _, f := range fx {
		b.Entry = append(b.Entry, entry{FullURL: f.Type + "/" + f.ID, Resource: f.Body, Request: request{Method: "PUT", URL: f.Type + "/" + f.ID}})
	}
	return json.Marshal(b)
}
