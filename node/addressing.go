package node

import (
	"context"
	"errors"
	"fmt"

	"github.com/schakel-nl/schakel/addressbook"
	"github.com/schakel-nl/schakel/plateau"
	"github.com/schakel-nl/schakel/push"
)

// addressing finds a partner's endpoint by the addressing plateau agreed
// with it (SPEC §6): at plateau 1–2 the parties use their own mechanism, so
// the agreement's configured endpoints come first and the addressbook
// second; at plateau 3–4 the national addressbook is the only source.
type addressing struct {
	plateaus *plateau.Enforcer
	// book is the addressbook (a live client or local replicas); nil when
	// the node has none and knows its partners by configuration only.
	book addressbook.EndpointResolver
}

func (a *addressing) Endpoint(ctx context.Context, ura, payloadType, fhirVersion string) (string, error) {
	ag, ok := a.plateaus.Agreement(ura)
	if ok && ag.Plateau(plateau.Addressing) <= 2 && !ag.Default {
		if u := configuredEndpoint(ag.Endpoints, payloadType, fhirVersion); u != "" {
			return u, nil
		}
	}
	var u string
	err := fmt.Errorf("%w: %s has no configured %s endpoint and this node has no addressbook", addressbook.ErrNotFound, ura, payloadType)
	if a.book != nil {
		u, err = a.book.Endpoint(ctx, ura, payloadType, fhirVersion)
	}
	if ok && errors.Is(err, addressbook.ErrNotFound) {
		// The partner reads which agreement's way of addressing came up
		// empty: its own arrangement, or the national addressbook.
		p := ag.Plateau(plateau.Addressing)
		where := "the national addressbook only"
		if p <= 2 {
			where = "the agreement's endpoints, then the addressbook"
		}
		return "", fmt.Errorf("%w (addressing, plateau %d: %s)", err, p, where)
	}
	return u, err
}

// configuredEndpoint maps a payload type to the configured endpoint. The
// FHIR endpoints are STU3 (the BgZ and Notified Pull version), but for a
// data endpoint asked in FHIR R4 (fhirVersion 4.0), which is the R4 base.
func configuredEndpoint(e plateau.Endpoints, payloadType, fhirVersion string) string {
	fhir := fhirVersion == "" || fhirVersion == "3.0"
	if fhirVersion == "4.0" && payloadType != addressbook.PayloadNotification && payloadType != push.PayloadType {
		return e.R4
	}
	switch payloadType {
	case addressbook.PayloadNotification:
		if fhir {
			return e.Notification
		}
	case addressbook.PayloadBgZServer:
		if fhir {
			return e.BgZ
		}
	case addressbook.PayloadAuthServer:
		return e.AuthServer
	case addressbook.PayloadClientJWKS:
		return e.JWKS
	case push.PayloadType:
		if fhir {
			return e.Push
		}
	}
	return ""
}
