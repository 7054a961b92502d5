package localization

import (
	"context"

	"github.com/schakel-nl/schakel/localization/index"
)

// ConsentFilter decides whether a localization answer may name a holder:
// whether the patient permits the requester to learn that the holder has
// data of this care context. Errors mean "unknown", which the callers treat
// as "no" (fail closed).
//
// The question carries the patient as an identifier because the two places
// that ask know different ones: the requesting node knows the BSN (system
// nl.SystemBSN) and can ask Mitz; the index knows only the pseudonym (system
// SystemPseudonym). An implementation answers an error for a system it does
// not understand.
type ConsentFilter interface {
	Permitted(ctx context.Context, q ConsentQuestion) (bool, error)
}

// ConsentQuestion is one closed question: may Requester learn of Holder's
// data about Patient?
type ConsentQuestion struct {
	PatientSystem string // nl.SystemBSN or SystemPseudonym
	Patient       string // the BSN, or the pseudonym's wire form
	HolderURA     string
	HolderType    string // provider (facility) type of the holder, SystemSourceType
	RequesterURA  string
	CareContext   index.Coding
}

// ConsentFunc adapts a function to ConsentFilter.
type ConsentFunc func(ctx context.Context, q ConsentQuestion) (bool, error)

// Permitted calls f.
func (f ConsentFunc) Permitted(ctx context.Context, q ConsentQuestion) (bool, error) {
	return f(ctx, q)
}

// PresumedConsent permits every holder. Only for exchanges where the
// framework presumes consent — a referral (SPEC §6, plateau 4) — and the
// caller must choose it explicitly; there is no default filter.
var PresumedConsent ConsentFilter = ConsentFunc(func(context.Context, ConsentQuestion) (bool, error) { return true, nil })
