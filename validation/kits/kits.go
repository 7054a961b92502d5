// Package kits composes the validation kit's registry from the care
// applications a node runs: the generic cases, and the cases of each
// registered application that has a kit. An application's kit lives in a
// package of its own (validation/<name>), apart from the application's
// package, so that the node does not carry the kit's machinery; this is
// the one place that pairs the two.
package kits

import (
	"fmt"

	"github.com/schakel-nl/schakel/careapp"
	"github.com/schakel-nl/schakel/validation"
	kitbeeld "github.com/schakel-nl/schakel/validation/beeld"
	kitbgz "github.com/schakel-nl/schakel/validation/bgz"
	kitcorrespondentie "github.com/schakel-nl/schakel/validation/correspondentie"
	kiteoverdracht "github.com/schakel-nl/schakel/validation/eoverdracht"
	kitgeboortezorg "github.com/schakel-nl/schakel/validation/geboortezorg"
)

// Kit is one care application's validation-kit cases.
type Kit struct {
	// Application is the care application's name (careapp.Application.Name).
	Application string
	// Register adds the application (validation.Application) and its
	// cases to the kit's registry.
	Register func(*validation.Registry) error
}

// Shipped are the kits of the care applications Schakel ships.
func Shipped() []Kit {
	return []Kit{
		{Application: kitbgz.Name, Register: kitbgz.Register},
		{Application: kitbgz.NameR4, Register: kitbgz.RegisterR4},
		{Application: kitcorrespondentie.Name, Register: kitcorrespondentie.Register},
		{Application: kitgeboortezorg.Name, Register: kitgeboortezorg.Register},
		{Application: kiteoverdracht.Name, Register: kiteoverdracht.Register},
		{Application: kitbeeld.Name, Register: kitbeeld.Register},
	}
}

// Registry is the kit's registry for apps: the generic cases and the kit
// of every application in apps that has one among kits. A kit for an
// application apps does not hold is refused: it would validate what the
// node does not run.
func Registry(apps *careapp.Registry, kits []Kit) (*validation.Registry, error) {
	reg := validation.NewRegistry()
	if err := reg.Add(validation.GenericCases()...); err != nil {
		return nil, err
	}
	for _, k := range kits {
		if _, ok := apps.Get(k.Application); !ok {
			return nil, fmt.Errorf("validation kit for %q: no such care application is registered (registered: %v)", k.Application, apps.Names())
		}
		if err := k.Register(reg); err != nil {
			return nil, err
		}
	}
	return reg, nil
}
