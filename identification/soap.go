// Package identification verifies citizens' BSNs: the node's client for the
// SBV-Z (Sectorale Berichtenvoorziening in de Zorg, run by CIBG) web service
// "OpvragenVerifieren", which checks a BSN and the identifying data given
// with it against the BRP, a cache of its answers, and a development
// stand-in that speaks the same protocol over a small register.
//
// The wire shape follows CIBG's published WSDL of OpvragenVerifieren
// (document/literal SOAP 1.1). Its element structure is taken from the
// WSDL as CIBG serves it for the dec14 version
// (https://webservice.sbv-z.nl/cibg.sbv.interface.xis.webservice.dec14/opvragenverifieren.asmx?WSDL);
// the current version's namespace and address (mrt21) and the meaning of
// Resultaat (G found, A found with deviating data, F error) and of the
// Melding codes (23002 BSN found, 23001 no result, 23006 not one person)
// from public clients of the service. See docs/identification.md.
package identification

import (
	"encoding/xml"
	"fmt"
	"strings"
)

// Namespaces and addresses of the OpvragenVerifieren service.
const (
	// Namespace is the service's current XML namespace (version mrt21).
	Namespace = "http://CIBG.SBV.Interface.XIS.Webservice/mrt21"
	// namespaceDec14 is the previous version's; answers in it are read too.
	namespaceDec14 = "http://CIBG.SBV.Interface.XIS.Webservice/dec14"
	// SOAPAction is the action of the one operation.
	SOAPAction = Namespace + "/OpvragenVerifieren"
	// Path is where the service answers under its host.
	Path = "/cibg.sbv.interface.xis.webservice.mrt21/opvragenverifieren.asmx"

	soapEnvelopeNS = "http://schemas.xmlsoap.org/soap/envelope/"
)

// Resultaat codes of an answer.
const (
	resultFound     = "G" // gevonden: one person, the data given matches
	resultDeviating = "A" // afwijkend: one person, some data given deviates
	resultError     = "F" // fout: no answer; the Melding says why
)

// Melding codes the client acts on.
const (
	codeFound      = "23002" // BSN gevonden
	codeNoResult   = "23001" // Geen resultaat gevonden
	codeNotOne     = "23006" // Vraag heeft niet tot één persoon geleid
	codeInvalidBSN = "SX01"  // the stand-in's format error for a BSN failing the 11-proef
)

// vraagPersoon is VraagTypePersoon, in the WSDL's element order; empty
// elements are left out.
type vraagPersoon struct {
	BSN                      string `xml:"BSN,omitempty"`
	Voornamen                string `xml:"Voornamen,omitempty"`
	Voorletter               string `xml:"Voorletter,omitempty"`
	VoorvoegselGeslachtsnaam string `xml:"VoorvoegselGeslachtsnaam,omitempty"`
	Geslachtsnaam            string `xml:"Geslachtsnaam,omitempty"`
	Geboortedatum            string `xml:"Geboortedatum,omitempty"`
	Geboorteplaats           string `xml:"Geboorteplaats,omitempty"`
	Geboorteland             string `xml:"Geboorteland,omitempty"`
	Geslachtsaanduiding      string `xml:"Geslachtsaanduiding,omitempty"`
}

// requestEnvelope is the SOAP request: OpvragenVerifieren around an
// OpvragenVerifierenVraagBericht.
type requestEnvelope struct {
	XMLName xml.Name `xml:"soap:Envelope"`
	Soap    string   `xml:"xmlns:soap,attr"`
	Body    struct {
		Op struct {
			XMLName xml.Name `xml:"OpvragenVerifieren"`
			NS      string   `xml:"xmlns,attr"`
			Bericht struct {
				Vraag struct {
					Persoon vraagPersoon `xml:"Persoon"`
				} `xml:"Vraag"`
				LokaalKenmerk string `xml:"LokaalKenmerk,omitempty"`
			} `xml:"OpvragenVerifierenVraagBericht"`
		}
	} `xml:"soap:Body"`
}

// incomingRequest reads a request by local names (the stand-in's side).
type incomingRequest struct {
	Body struct {
		Op *struct {
			XMLName xml.Name
			Bericht struct {
				Vraag struct {
					Persoon vraagPersoon `xml:"Persoon"`
				} `xml:"Vraag"`
				LokaalKenmerk string `xml:"LokaalKenmerk"`
			} `xml:"OpvragenVerifierenVraagBericht"`
		} `xml:"OpvragenVerifieren"`
	} `xml:"Body"`
}

// afwijkend is AfwijkendType: a value from the register and whether the
// value asked deviates from it.
type afwijkend struct {
	Value     string `xml:",chardata"`
	Afwijkend bool   `xml:"Afwijkend,attr"`
}

// antwoordPersoon is AntwoordTypePersoon (the parts the client reads and
// the stand-in writes).
type antwoordPersoon struct {
	BSN                      string     `xml:"BSN,omitempty"`
	Voornamen                *afwijkend `xml:"Voornamen,omitempty"`
	VoorvoegselGeslachtsnaam *afwijkend `xml:"VoorvoegselGeslachtsnaam,omitempty"`
	Geslachtsnaam            *afwijkend `xml:"Geslachtsnaam,omitempty"`
	Geboortedatum            *afwijkend `xml:"Geboortedatum,omitempty"`
	Geslachtsaanduiding      *afwijkend `xml:"Geslachtsaanduiding,omitempty"`
}

// melding is MeldingType: Soort (G, W, F), Code and text.
type melding struct {
	Soort string `xml:"Soort,attr,omitempty"`
	Code  string `xml:"Code,attr,omitempty"`
	Text  string `xml:",chardata"`
}

// antwoordBericht is OpvragenVerifierenAntwoordBericht.
type antwoordBericht struct {
	Vraag *struct {
		Persoon vraagPersoon `xml:"Persoon"`
	} `xml:"Vraag,omitempty"`
	Antwoord *struct {
		Persoon *antwoordPersoon `xml:"Persoon,omitempty"`
	} `xml:"Antwoord,omitempty"`
	Resultaat     string    `xml:"Resultaat"`
	Melding       []melding `xml:"Melding"`
	LokaalKenmerk string    `xml:"LokaalKenmerk,omitempty"`
}

// responseEnvelope is the SOAP answer as the stand-in writes it.
type responseEnvelope struct {
	XMLName xml.Name `xml:"soap:Envelope"`
	Soap    string   `xml:"xmlns:soap,attr"`
	Body    struct {
		Response *struct {
			XMLName xml.Name        `xml:"OpvragenVerifierenResponse"`
			NS      string          `xml:"xmlns,attr"`
			Bericht antwoordBericht `xml:"OpvragenVerifierenAntwoordBericht"`
		}
		Fault *fault
	} `xml:"soap:Body"`
}

// fault is a SOAP 1.1 Fault.
type fault struct {
	XMLName xml.Name `xml:"soap:Fault"`
	Code    string   `xml:"faultcode"`
	String  string   `xml:"faultstring"`
}

// incomingResponse reads an answer by local names (the client's side).
type incomingResponse struct {
	Body struct {
		Response *struct {
			XMLName xml.Name
			Bericht antwoordBericht `xml:"OpvragenVerifierenAntwoordBericht"`
		} `xml:"OpvragenVerifierenResponse"`
		Fault *struct {
			Code string `xml:"faultcode"`
		} `xml:"Fault"`
	} `xml:"Body"`
}

// sbvzDate turns a FHIR date (YYYY, YYYY-MM or YYYY-MM-DD) into the
// service's JJJJMMDD, unknown parts 00; "" when date is empty.
func sbvzDate(date string) (string, error) {
	if date == "" {
		return "", nil
	}
	parts := strings.Split(date, "-")
	if len(parts) > 3 || len(parts[0]) != 4 {
		return "", fmt.Errorf("birth date %q is not a FHIR date", date)
	}
	out := parts[0]
	for i := 1; i < 3; i++ {
		if i < len(parts) {
			if len(parts[i]) != 2 {
				return "", fmt.Errorf("birth date %q is not a FHIR date", date)
			}
			out += parts[i]
		} else {
			out += "00"
		}
	}
	for _, c := range out {
		if c < '0' || c > '9' {
			return "", fmt.Errorf("birth date %q is not a FHIR date", date)
		}
	}
	return out, nil
}
