package network

import (
	"github.com/schakel-nl/schakel/careapp"
	"github.com/schakel-nl/schakel/validation/kits"
)

// pullApplications are the care applications a partner may ask this
// network's nodes for data in (the agreements' bilateral list): those of
// Options.Applications with a query set.
func (nw *Network) pullApplications() []string {
	var out []string
	for _, a := range nw.opts.Applications.All() {
		if _, ok := a.(careapp.QuerySet); ok {
			out = append(out, a.Name())
		}
	}
	return out
}

// kits are the validation kits of the network's care applications.
func (nw *Network) kits() []kits.Kit {
	var out []kits.Kit
	for _, k := range kits.Shipped() {
		if _, ok := nw.opts.Applications.Get(k.Application); ok {
			out = append(out, k)
		}
	}
	return out
}

// care is the care application the demo's exchanges on pattern p are for:
// Options.Care, else the first registered application on p.
func (nw *Network) care(p careapp.Pattern) string {
	if nw.opts.Care != "" {
		return nw.opts.Care
	}
	if apps := nw.opts.Applications.On(p); len(apps) > 0 {
		return apps[0].Name()
	}
	return ""
}
