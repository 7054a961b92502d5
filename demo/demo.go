// Package demo generates synthetic BgZ patients: FHIR STU3 JSON resources
// shaped like the Nictiz BgZ MSZ 2.0 qualification fixtures (zib2017
// profiles), with enough data that every BgZ search (bgz.Queries) finds
// something. All data is invented; BSNs come from the 9999 test range.
package demo

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/schakel-nl/schakel/nl"
)

// MaxCount is the most patients Generate makes for one seed: the valid BSNs
// of the 9999xxxxx test range, less those the Nictiz fixtures use.
const MaxCount = 9000

// ErrInvalidOptions is returned by Generate for options it cannot honour.
var ErrInvalidOptions = errors.New("invalid demo options")

// Options steer Generate.
type Options struct {
	// Count is the number of patients, 0..MaxCount.
	Count int
	// Seed makes the output reproducible: the same seed gives the same
	// patients, and patient i does not depend on Count.
	Seed int64
	// GPName names each patient's general practice organisation; empty
	// gives "Huisartsenpraktijk De Demo".
	GPName string
	// IDPrefix starts every resource id, "<prefix>-<n>-<kind>"; empty gives
	// "demo". Use different prefixes to load several seeds into one store.
	IDPrefix string
	// Reference is the "today" the data is dated back from; zero gives
	// 2025-06-01 so that output is reproducible.
	Reference time.Time
}

// Patient is one generated patient and all of its resources.
type Patient struct {
	// BSN is the patient's valid test BSN (9999xxxxx).
	BSN string
	// Name is the patient's display name, e.g. "Anna de Vries".
	Name string
	// Resources are complete FHIR STU3 JSON resources; the Patient is
	// first, every other one is the patient's own or referenced by one.
	Resources []json.RawMessage
}

// fixtureBSNs are the Nictiz BgZ MSZ test patients; demo data must not
// claim them, since the fixtures may be loaded into the same store.
var fixtureBSNs = map[string]bool{
	"999909587": true, "999911259": true, "999906276": true, "999906410": true, "999911119": true,
}

// Generate returns opts.Count synthetic patients with distinct valid BSNs.
func Generate(opts Options) ([]Patient, error) {
	if opts.Count < 0 || opts.Count > MaxCount {
		return nil, fmt.Errorf("%w: count %d not in 0..%d", ErrInvalidOptions, opts.Count, MaxCount)
	}
	if opts.GPName == "" {
		opts.GPName = "Huisartsenpraktijk De Demo"
	}
	if opts.IDPrefix == "" {
		opts.IDPrefix = "demo"
	}
	if opts.Reference.IsZero() {
		opts.Reference = time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)
	}
	bsns, err := testBSNs(opts.Seed, opts.Count)
	if err != nil {
		return nil, err
	}
	patients := make([]Patient, 0, opts.Count)
	for i, bsn := range bsns {
		rng := rand.New(rand.NewPCG(uint64(opts.Seed), uint64(i)))
		g := &generator{opts: opts, rng: rng, n: i + 1, bsn: bsn}
		p, err := g.patient()
		if err != nil {
			return nil, err
		}
		patients = append(patients, p)
	}
	return patients, nil
}

// testBSNs walks the 10,000 numbers 9999 0000..9999 9999 (eight digits, the
// ninth a check digit) in a seed-dependent order and keeps the valid ones.
// The step is coprime to 10,000, so every number is visited once.
func testBSNs(seed int64, count int) ([]string, error) {
	const space, step = 10000, 7919
	start := int(uint64(seed) % space)
	out := make([]string, 0, count)
	for i := 0; i < space && len(out) < count; i++ {
		first8 := fmt.Sprintf("9999%04d", (start+i*step)%space)
		d, ok := nl.BSNCheckDigit(first8)
		if !ok {
			continue
		}
		bsn := first8 + string(d)
		if fixtureBSNs[bsn] || nl.ValidateBSN(bsn) != nil {
			continue
		}
		out = append(out, bsn)
	}
	if len(out) < count {
		return nil, fmt.Errorf("%w: only %d test BSNs available", ErrInvalidOptions, len(out))
	}
	return out, nil
}

// TransactionBundle wraps the patient's resources in an STU3 transaction
// Bundle of PUT entries to "Type/id", so loading it twice changes nothing.
// Resources without a resourceType and id (Generate makes none) are left out.
func TransactionBundle(p Patient) json.RawMessage {
	entries := make([]any, 0, len(p.Resources))
	for _, r := range p.Resources {
		var head struct {
			ResourceType string `json:"resourceType"`
			ID           string `json:"id"`
		}
		if json.Unmarshal(r, &head) != nil || head.ResourceType == "" || head.ID == "" {
			continue
		}
		entries = append(entries, obj{
			{"resource", r},
			{"request", obj{{"method", "PUT"}, {"url", head.ResourceType + "/" + head.ID}}},
		})
	}
	b, err := json.Marshal(obj{
		{"resourceType", "Bundle"},
		{"type", "transaction"},
		{"entry", entries},
	})
	if err != nil {
		// Unreachable: every resource left in was parsed above.
		panic(fmt.Sprintf("demo: transaction bundle: %v", err))
	}
	return b
}
