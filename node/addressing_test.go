package node

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/schakel-nl/schakel/addressbook"
	"github.com/schakel-nl/schakel/plateau"
)

// recordingBook answers every lookup with a recognisable address and
// remembers that it was asked.
type recordingBook struct{ asked []string }

func (b *recordingBook) Endpoint(_ context.Context, ura, payloadType, _ string) (string, error) {
	b.asked = append(b.asked, ura+" "+payloadType)
	return "https://addressbook.example/" + ura + "/" + payloadType, nil
}

func addressingPlateaus(p int) plateau.Plateaus { return plateauOneBut(plateau.Addressing, p) }

// TestAddressingByPlateau: a plateau 1–2 partner's configured endpoints come
// first and the addressbook fills in the rest; every other partner is looked
// up in the addressbook; without an addressbook a missing endpoint is a
// clear ErrNotFound.
func TestAddressingByPlateau(t *testing.T) {
	const own, regional, national = "90000011", "90000012", "90000013"
	configured := plateau.Endpoints{Notification: "https://gp.example/fhir/stu3/" + own + "/Task", AuthServer: "https://gp.example"}
	enforcer, err := plateau.New(plateau.Config{Agreements: []plateau.PartnerConfig{
		{URA: own, Plateaus: addressingPlateaus(1), Endpoints: configured},
		{URA: regional, Plateaus: addressingPlateaus(2)},
		{URA: national, Plateaus: addressingPlateaus(3)},
	}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	book := &recordingBook{}
	a := &addressing{plateaus: enforcer, book: book}
	for _, tc := range []struct {
		ura, payload, version, want string
		fromBook                    bool
	}{
		{own, addressbook.PayloadNotification, "3.0", configured.Notification, false},
		{own, addressbook.PayloadAuthServer, "", configured.AuthServer, false},
		{own, addressbook.PayloadBgZServer, "3.0", "", true},    // not configured
		{own, addressbook.PayloadNotification, "4.0", "", true}, // configured endpoints are STU3
		{regional, addressbook.PayloadNotification, "3.0", "", true},
		{national, addressbook.PayloadAuthServer, "", "", true},
		{"90000099", addressbook.PayloadAuthServer, "", "", true}, // no agreement: the addressbook decides
	} {
		book.asked = nil
		got, err := a.Endpoint(context.Background(), tc.ura, tc.payload, tc.version)
		if err != nil {
			t.Fatalf("%s %s: %v", tc.ura, tc.payload, err)
		}
		if tc.fromBook {
			if len(book.asked) != 1 || !strings.HasPrefix(got, "https://addressbook.example/"+tc.ura) {
				t.Errorf("%s %s %s: got %s (addressbook asked %v), want the addressbook's", tc.ura, tc.payload, tc.version, got, book.asked)
			}
			continue
		}
		if got != tc.want || len(book.asked) != 0 {
			t.Errorf("%s %s: got %s (addressbook asked %v), want the configured %s", tc.ura, tc.payload, got, book.asked, tc.want)
		}
	}

	alone := &addressing{plateaus: enforcer}
	if got, err := alone.Endpoint(context.Background(), own, addressbook.PayloadNotification, "3.0"); err != nil || got != configured.Notification {
		t.Errorf("configured endpoint without an addressbook: %s, %v", got, err)
	}
	_, err = alone.Endpoint(context.Background(), own, addressbook.PayloadClientJWKS, "")
	if !errors.Is(err, addressbook.ErrNotFound) || !strings.Contains(err.Error(), own) || !strings.Contains(err.Error(), "no addressbook") ||
		!strings.Contains(err.Error(), "(addressing, plateau 1: the agreement's endpoints, then the addressbook)") {
		t.Errorf("missing endpoint without an addressbook: %v", err)
	}
	// A partner the addressbook does not list: the refusal names the
	// plateau agreed and the way it addresses.
	empty := &addressing{plateaus: enforcer, book: emptyBook{}}
	for ura, want := range map[string]string{
		regional:   "(addressing, plateau 2: the agreement's endpoints, then the addressbook)",
		national:   "(addressing, plateau 3: the national addressbook only)",
		"90000099": "", // no agreement: nothing to name
	} {
		_, err := empty.Endpoint(context.Background(), ura, addressbook.PayloadNotification, "3.0")
		if !errors.Is(err, addressbook.ErrNotFound) || (want != "" && !strings.Contains(err.Error(), want)) || (want == "" && strings.Contains(err.Error(), "addressing, plateau")) {
			t.Errorf("%s not in the addressbook: %v, want %q", ura, err, want)
		}
	}
}

// emptyBook lists no one.
type emptyBook struct{}

func (emptyBook) Endpoint(_ context.Context, ura, _, _ string) (string, error) {
	return "", fmt.Errorf("%w: organisation %s is not in the addressbook", addressbook.ErrNotFound, ura)
}

func TestConfigValidateOwnAddressing(t *testing.T) {
	endpoints := plateau.Endpoints{Notification: "https://h.example/fhir/stu3/90000012/Task", BgZ: "https://h.example/fhir/stu3/90000012",
		AuthServer: "https://h.example", JWKS: "https://h.example/jwks/90000012"}
	for _, tc := range []struct {
		name string
		mod  func(*Config)
		want string // part of the error; empty = valid
	}{
		{"configured endpoints instead of an addressbook", func(c *Config) {
			c.Partners.Agreements = []plateau.PartnerConfig{{URA: "90000012", Plateaus: addressingPlateaus(2), Endpoints: endpoints}}
		}, ""},
		{"configured endpoints beside an addressbook", func(c *Config) {
			c.AddressbookURL = "https://ab.example/fhir"
			c.Partners.Agreements = []plateau.PartnerConfig{{URA: "90000012", Plateaus: addressingPlateaus(1), Endpoints: endpoints}}
		}, ""},
		{"no addressbook and no agreements", func(*Config) {}, "no addressbook and no partner agreements"},
		{"no addressbook, an agreement without endpoints", func(c *Config) {
			c.Partners.Agreements = []plateau.PartnerConfig{{URA: "90000012", Name: "Ziekenhuis", Plateaus: addressingPlateaus(1)}}
		}, "partners.agreements[0] (Ziekenhuis): no endpoints configured"},
		{"no addressbook, a plateau-3 partner", func(c *Config) {
			c.Partners.Agreements = []plateau.PartnerConfig{{URA: "90000012", Plateaus: addressingPlateaus(3)}}
		}, "addressing is agreed at plateau 3, which needs the national addressbook"},
		{"no addressbook, a default agreement", func(c *Config) {
			c.Partners.Default = plateau.Uniform(1)
			c.Partners.Agreements = []plateau.PartnerConfig{{URA: "90000012", Plateaus: addressingPlateaus(1), Endpoints: endpoints}}
		}, "partners.default: a node without an addressbook"},
		{"configured endpoints for a plateau-4 partner", func(c *Config) {
			c.AddressbookURL = "https://ab.example/fhir"
			c.Partners.Agreements = []plateau.PartnerConfig{{URA: "90000012", Plateaus: addressingPlateaus(4), Endpoints: endpoints}}
		}, "from plateau 3 on the partner's endpoints come from the national addressbook only"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := validConfig(t)
			c.AddressbookURL = ""
			tc.mod(&c)
			wantValidate(t, &c, tc.want)
		})
	}
}
