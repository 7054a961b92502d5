// Package kittest runs the validation kit against the nodes of a local
// network in tests: the network brought up and stopped with the test, the
// kit's identity and registry, and the configuration of a run against one
// of the network's nodes, driven through its internal API. The kits'
// tests (validation/<application>) share it.
package kittest

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/schakel-nl/schakel/network"
	"github.com/schakel-nl/schakel/validation"
)

// Network brings a network up with opts (in a temporary directory unless
// opts.DataDir is set), starts it, and stops it when t ends; a network that
// stops with an error fails t.
func Network(t testing.TB, opts network.Options) *network.Network {
	t.Helper()
	if opts.DataDir == "" {
		opts.DataDir = t.TempDir()
	}
	ctx, cancel := context.WithCancel(context.Background())
	nw, err := network.Up(ctx, opts)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	nw.Start(ctx)
	t.Cleanup(func() {
		cancel()
		if err := nw.Wait(); err != nil {
			t.Errorf("network stopped with: %v", err)
		}
	})
	return nw
}

// Kit is the validation service admitted to a network: what `network up`
// wrote for it (kit.json and its identity) and the registry of the cases
// a test runs.
type Kit struct {
	Network *network.Network
	File    validation.KitFile
	ID      validation.Identity
	Reg     *validation.Registry
}

// New loads the kit of nw with the generic cases and the cases each of
// register adds (an application kit's Register).
func New(t testing.TB, nw *network.Network, register ...func(*validation.Registry) error) *Kit {
	t.Helper()
	file, id, err := validation.LoadIdentity(nw.ValidatorDir())
	if err != nil {
		t.Fatal(err)
	}
	reg := validation.NewRegistry()
	if err := reg.Add(validation.GenericCases()...); err != nil {
		t.Fatal(err)
	}
	for _, r := range register {
		if err := r(reg); err != nil {
			t.Fatal(err)
		}
	}
	return &Kit{Network: nw, File: file, ID: id, Reg: reg}
}

// Config is a run against the node of participant ura as kit.json lists
// it, in role for care: driven through the node's internal API, with the
// patient kit.json names for it (else the network's first), waiting 15 s
// for the node to act. A test changes what it needs before Run.
func (k *Kit) Config(t testing.TB, ura string, role validation.Role, care string) validation.Config {
	t.Helper()
	target, ok := k.File.TargetFor(ura, "")
	if !ok {
		t.Fatalf("kit.json lists no node for %s", ura)
	}
	token, err := os.ReadFile(target.TokenFile)
	if err != nil {
		t.Fatal(err)
	}
	patient := target.Patient
	if patient == "" {
		patient = k.Network.Patients[0].BSN
	}
	return validation.Config{Target: target.PublicURL, TargetURA: ura, Role: role, Care: care, Kit: k.ID,
		Addressbook: k.File.Addressbook, Listen: k.File.Listen, Patient: patient,
		Driver: validation.SchakelDriver{InternalURL: target.InternalURL, Token: strings.TrimSpace(string(token))},
		Wait:   15 * time.Second}
}

// Run runs cfg with the kit's registry; a run that cannot take place
// fails t.
func (k *Kit) Run(t testing.TB, cfg validation.Config) *validation.Report {
	t.Helper()
	rep, err := validation.Run(context.Background(), cfg, k.Reg)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}
