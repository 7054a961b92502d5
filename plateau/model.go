// Package plateau is the Twiin growth model ("Groeien met Twiin") as code:
// the generic functions, what each of the four plateaus requires of them,
// the plateau agreed with each partner, and the Enforcer that holds every
// token request and data access to exactly what that plateau demands.
//
// The characteristics below are translated from the Twiin growth model
// brochure (seed 000, "Groeien met Twiin"), its web version (seed 001) and
// the conference slides (seed 002); each entry names its source.
package plateau

import "fmt"

// Function is one of the generic functions of the Twiin framework.
type Function string

// The generic functions, in the order the growth model lists them.
const (
	Identification Function = "identification"
	Authentication Function = "authentication"
	Authorization  Function = "authorization"
	Consent        Function = "consent"
	Localization   Function = "localization"
	Addressing     Function = "addressing"
	Logging        Function = "logging"
	Network        Function = "network"
)

// Functions lists every generic function in model order.
var Functions = []Function{Identification, Authentication, Authorization, Consent, Localization, Addressing, Logging, Network}

// Valid reports whether f is a known generic function.
func (f Function) Valid() bool {
	for _, g := range Functions {
		if f == g {
			return true
		}
	}
	return false
}

// Title is the function's name for reports.
func (f Function) Title() string {
	switch f {
	case Identification:
		return "Citizen identification"
	case Authentication:
		return "User authentication/identification"
	case Authorization:
		return "Authorization"
	case Consent:
		return "Patient consent"
	case Localization:
		return "Localization"
	case Addressing:
		return "Addressing"
	case Logging:
		return "Logging"
	case Network:
		return "Network"
	}
	return string(f)
}

// Lowest and Highest bound the plateaus.
const (
	Lowest  = 1
	Highest = 4
)

// ValidPlateau reports whether p is a plateau (1–4).
func ValidPlateau(p int) bool { return p >= Lowest && p <= Highest }

// Source cites the seed document a characteristic is taken from.
type Source struct {
	// Document is the seed file's stem, e.g. "000_5bcb2634aeeb41d4".
	Document string
	// Section names the part of the document, e.g. "Kenmerken plateau 2 — Autorisatie".
	Section string
}

func (s Source) String() string { return s.Document + ", " + s.Section }

// The seed documents the model is taken from.
const (
	docBrochure = "000_5bcb2634aeeb41d4" // "Groeien met Twiin" brochure
	docWeb      = "001_82af705f32bc01c7" // the same growth model, web version
	docSlides   = "002_275f7ceeacb7d965" // Zorg & ICT conference slides
)

// Level describes one plateau as a whole.
type Level struct {
	Plateau int
	// Name is the plateau's short name.
	Name string
	// Summary is the growth model's one-line description.
	Summary string
	// Aim is the brochure's sentence on what the plateau is about.
	Aim    string
	Source Source
}

// Levels are the four plateaus (index 0 is plateau 1).
var Levels = [Highest]Level{
	{1, "Mutual exchange", "Exchange with each other on the basis of mutual trust.",
		"Awareness on the way to national participation; reaching mutual alignment and agreement.",
		Source{docBrochure, "Dit is het groeimodel; Kenmerken plateau 1"}},
	{2, "Exchange within a collaboration", "Exchange between care providers within a collaboration (its own trust domain).",
		"Joint agreements, demonstrable measures and concrete steps towards plateau 3, national availability of data.",
		Source{docBrochure, "Dit is het groeimodel; Kenmerken plateau 2"}},
	{3, "Collaboration and nationally consultable", "Exchange within a collaboration (its own trust domain) and nationally consultable through Twiin.",
		"Joint agreements, demonstrable measures and concrete steps towards the Twiin framework; national exchange of data.",
		Source{docBrochure, "Dit is het groeimodel; Kenmerken plateau 3"}},
	{4, "Compliance with the Twiin framework", "Full compliance with the Twiin framework and national exchange of data with other Twiin participants.",
		"National exchange across infrastructures with Twiin participants, under the conditions and requirements of the Twiin framework.",
		Source{docBrochure, "Dit is het groeimodel; Voldoen aan het Twiin Afsprakenstelsel"}},
}

// Characteristic is what the growth model says one generic function looks
// like at one plateau.
type Characteristic struct {
	Function Function
	Plateau  int
	// Text is the characteristic, translated from the seed documents: an
	// introduction and, where the source has them, its bullet points.
	Text    string
	Bullets []string
	Sources []Source
}

// Characteristics is the growth model table: every function at every
// plateau, in model order.
var Characteristics = []Characteristic{
	// Citizen identification is the same on every plateau.
	{Identification, 1, "Patient data is made available on the basis of a verified and validated BSN, meeting the requirements around patient consent.", nil,
		[]Source{{docBrochure, "Kenmerken plateau 1 — Identificatie burger"}, {docWeb, "Kenmerken plateau 1"}}},
	{Identification, 2, "Patient data is made available on the basis of a verified and validated BSN, meeting the requirements around patient consent.", nil,
		[]Source{{docBrochure, "Kenmerken plateau 2 — Identificatie burger"}, {docWeb, "Kenmerken plateau 2"}}},
	{Identification, 3, "Patient data is made available on the basis of a verified and validated BSN, meeting the requirements around patient consent.", nil,
		[]Source{{docBrochure, "Kenmerken plateau 3 — Identificatie burger"}, {docWeb, "Kenmerken plateau 3"}}},
	{Identification, 4, "Patient data is made available on the basis of a verified and validated BSN, meeting the requirements around patient consent.", nil,
		[]Source{{docBrochure, "Voldoen aan het Twiin Afsprakenstelsel — Identificatie burger"}, {docWeb, "Voldoen aan het Twiin Afsprakenstelsel"}}},

	{Authentication, 1, "Trust in the communication partner's local identification and authentication of users. To give that trust, the communicating organisations must be able to show that:", []string{
		"user management is in order: a procedure is followed to manage user identities;",
		"users are authenticated locally;",
		"data about users may be sent along in the communication, but need have little or no meaning for the communication partner.",
	}, []Source{{docBrochure, "Kenmerken plateau 1 — Authenticatie/identificatie gebruikers"}, {docWeb, "Kenmerken plateau 1"}}},
	{Authentication, 2, "The communicating parties have agreed how they exchange within the collaboration. In addition:", []string{
		"the communicating parties comply with NEN 7510, which means among other things that users authenticate (locally) with a strong, two-factor authentication means;",
		"to show identities outside the own domain, an agreed code system for user identities is used, which makes a user uniquely identifiable and traceable.",
	}, []Source{{docBrochure, "Kenmerken plateau 2 — Authenticatie/identificatie gebruikers"}, {docWeb, "Kenmerken plateau 2"}}},
	{Authentication, 3, "Source record holders support consulting parties that work to the Twiin specifications. On top of plateau 2:", []string{
		"the source system supports the Twiin specifications by which consulting organisations and systems are identified;",
		"this uses the national code system for identification: URA (UZI register subscriber number), UZI numbers and UZI role codes;",
		"data about the consulting care provider organisation is sent along digitally signed (to the Twiin specifications), so that the source record holder can identify, authenticate and authorize the consulting party.",
	}, []Source{{docBrochure, "Kenmerken plateau 3 — Authenticatie/identificatie gebruikers"}, {docWeb, "Kenmerken plateau 3"}}},
	{Authentication, 4, "The exchanging parties provide enough data to identify and authenticate. On top of plateaus 1 and 2:", []string{
		"the communicating parties comply with NEN 7512, which means among other things that users authenticate with an eIDAS high authentication means;",
		"data about users is sent along signed (by the authentication means) in the exchange (to the Twiin specifications), so that the communication partner can identify and authenticate the user;",
		"the national code system for identification is used: UZI numbers and UZI role codes.",
	}, []Source{{docBrochure, "Voldoen aan het Twiin Afsprakenstelsel — Authenticatie/identificatie gebruikers"}, {docWeb, "Voldoen aan het Twiin Afsprakenstelsel"}}},

	{Authorization, 1, "Care providers have agreed among themselves which person, persons or groups of persons may request data. This is demonstrably arranged within the communicating parties.", nil,
		[]Source{{docBrochure, "Kenmerken plateau 1 — Autorisatie"}, {docSlides, "Autorisatie"}}},
	{Authorization, 2, "Starting point: agreements on authorization within the collaboration. Care providers within the collaboration have agreed on authorization for persons or groups of persons; this is demonstrably arranged within the communicating parties and translated into roles as made available by the exchange partners. The exchange partner's log records the role of the person who made a request.", nil,
		[]Source{{docBrochure, "Kenmerken plateau 2 — Autorisatie"}, {docSlides, "Autorisatie"}}},
	{Authorization, 3, "The party that makes data available checks the authorization according to the nationally agreed authorization guideline.", nil,
		[]Source{{docBrochure, "Kenmerken plateau 3 — Autorisatie"}, {docSlides, "Autorisatie"}}},
	{Authorization, 4, "Starting point: national agreements on authorization.", []string{
		"care providers use the available medical authorization protocols and the roles agreed in them; this is demonstrably arranged within the care providers and translated into roles as made available by the exchange partners;",
		"the party that makes data available performs the authorization check;",
		"the log records the role of the requesting party (at person level), registered according to the medical authorization protocol.",
	}, []Source{{docBrochure, "Voldoen aan het Twiin Afsprakenstelsel — Autorisatie"}, {docSlides, "Autorisatie"}}},

	{Consent, 1, "The care professional records the patient's or client's consent in their own information system.", nil,
		[]Source{{docBrochure, "Kenmerken plateau 1 — Patiënttoestemming"}, {docSlides, "Patiënttoestemming"}}},
	{Consent, 2, "A (regional) portal is available to record the patient's or client's consent; designated care providers can then query it.", []string{
		"where there is no regional exchange or regional portal yet, the recommendation is to choose the common service Mitz directly.",
	}, []Source{{docBrochure, "Kenmerken plateau 2 — Patiënttoestemming"}, {docSlides, "Patiënttoestemming"}}},
	{Consent, 3, "Consents made available regionally are migrated (where possible) to the common service Mitz.", nil,
		[]Source{{docBrochure, "Kenmerken plateau 3 — Patiënttoestemming"}, {docSlides, "Patiënttoestemming"}}},
	{Consent, 4, "Nationally, consent for making data consultable is recorded through the common service Mitz. On referral, consent is presumed and Mitz is not required.", nil,
		[]Source{{docBrochure, "Voldoen aan het Twiin Afsprakenstelsel — Patiënttoestemming"}, {docSlides, "Patiënttoestemming"}}},

	{Localization, 1, "There is no localization service and each care organisation queries others only to a limited extent, for example in a 1:1 exchange or a regional collaboration.", nil,
		[]Source{{docBrochure, "Kenmerken plateau 1 — Lokalisatie"}, {docWeb, "Kenmerken plateau 1"}}},
	{Localization, 2, "A localization service prevents excessive querying in a (regional) exchange.", nil,
		[]Source{{docBrochure, "Kenmerken plateau 2 — Lokalisatie"}, {docWeb, "Kenmerken plateau 2"}}},
	{Localization, 3, "A localization service prevents excessive querying in a (regional) exchange. Where communication with a plateau-3 institution is needed, direct querying is added.", nil,
		[]Source{{docBrochure, "Kenmerken plateau 3 — Lokalisatie"}, {docWeb, "Kenmerken plateau 3"}}},
	{Localization, 4, "Nationally, localization is recorded through the common service Mitz.", nil,
		[]Source{{docBrochure, "Voldoen aan het Twiin Afsprakenstelsel — Lokalisatie"}, {docWeb, "Voldoen aan het Twiin Afsprakenstelsel"}}},

	{Addressing, 1, "The communicating parties use their own addressing mechanism, one that yields correct and current addresses, to exchange.", nil,
		[]Source{{docBrochure, "Kenmerken plateau 1 — Adressering"}, {docSlides, "Adressering"}}},
	{Addressing, 2, "The communicating parties use their own addressing mechanism to exchange. This can be anything from hard-coded IP addresses to an own addressing service; Twiin sets no requirements on it.", nil,
		[]Source{{docBrochure, "Kenmerken plateau 2 — Adressering"}, {docSlides, "Adressering"}}},
	{Addressing, 3, "To be nationally consultable, the (GtK) endpoint meant for it is listed in the addressbook Twiin uses; Twiin has chosen ZORG-AB.", nil,
		[]Source{{docBrochure, "Kenmerken plateau 3 — Adressering"}, {docSlides, "Adressering"}}},
	{Addressing, 4, "Address information is obtained in a reliable way; as a first step towards the desired situation, Twiin sees the use of the common facility ZORG-AB for addressing.", []string{
		"for every form of national exchange, all electronic services involved are listed in the addressbook Twiin uses.",
	}, []Source{{docBrochure, "Voldoen aan het Twiin Afsprakenstelsel — Adressering"}, {docSlides, "Adressering, plateau 4"}}},

	{Logging, 1, "Each care provider is responsible for its own logging according to NEN 7513 and makes it available for internal use and, on request, to external parties for monitoring.", nil,
		[]Source{{docBrochure, "Kenmerken plateau 1 — Logging"}, {docWeb, "Kenmerken plateau 1"}}},
	// Both seed documents repeat the addressing text under "Logging" for
	// plateau 2, an evident editing slip; SPEC §6 reads it as plateau 1's.
	{Logging, 2, "Each care provider is responsible for its own logging according to NEN 7513 and makes it available for internal use and, on request, to external parties for monitoring.", nil,
		[]Source{{docBrochure, "Kenmerken plateau 1 — Logging (plateau 2 repeats the addressing text)"}, {docWeb, "Kenmerken plateau 2"}}},
	{Logging, 3, "Logging and monitoring according to the national agreements in line with NEN 7510, NEN 7512 and NEN 7513. Participating care providers meet the national agreements on logging and the procedures for monitoring and checking that logging.", nil,
		[]Source{{docBrochure, "Kenmerken plateau 3 — Logging"}, {docWeb, "Kenmerken plateau 3"}}},
	{Logging, 4, "Logging and monitoring according to the national agreements in line with NEN 7510, NEN 7512 and NEN 7513. Care providers taking part in Twiin meet the national agreements on logging and the procedures for monitoring and checking that logging.", nil,
		[]Source{{docBrochure, "Voldoen aan het Twiin Afsprakenstelsel — Logging"}, {docWeb, "Voldoen aan het Twiin Afsprakenstelsel"}}},

	{Network, 1, "Care providers agree among themselves on the reliability, integrity and confidentiality of their communication, taking mutual TLS (channel encryption) into account.", nil,
		[]Source{{docBrochure, "Kenmerken plateau 1 — Netwerk"}, {docWeb, "Kenmerken plateau 1"}}},
	{Network, 2, "Within the collaboration, care providers have agreed on the reliability, integrity and confidentiality of their communication, taking mutual TLS (channel encryption) into account.", []string{
		"where care providers use exchange parties, they set the same requirements on them;",
		"care providers agree with the exchange parties on the performance needed.",
	}, []Source{{docBrochure, "Kenmerken plateau 2 — Netwerk"}, {docWeb, "Kenmerken plateau 2"}}},
	{Network, 3, "Within the collaboration, care providers have agreed on the reliability, integrity and confidentiality of their communication, taking mutual TLS (channel encryption) into account.", []string{
		"care providers that use exchange parties set the same requirements on them;",
		"care providers agree with the exchange parties on the performance needed within and outside their own collaboration;",
		"NEN 7512: to make data nationally available, channel encryption and secure networks are required.",
	}, []Source{{docBrochure, "Kenmerken plateau 3 — Netwerk"}, {docWeb, "Kenmerken plateau 3"}}},
	{Network, 4, "Care providers have agreed on the reliability, integrity and confidentiality of their communication, taking NEN 7512 and the requirements of the suppliers of common facilities into account; Twiin has chosen channel encryption and secure networks.", []string{
		"where care providers use exchange parties, they set the same requirements on them;",
		"there are national agreements between exchange parties, care providers and collaborations on the performance needed.",
	}, []Source{{docBrochure, "Voldoen aan het Twiin Afsprakenstelsel — Netwerk"}, {docWeb, "Voldoen aan het Twiin Afsprakenstelsel"}}},
}

// CharacteristicOf returns the growth model's characteristic of f at plateau p.
func CharacteristicOf(f Function, p int) (Characteristic, error) {
	for _, c := range Characteristics {
		if c.Function == f && c.Plateau == p {
			return c, nil
		}
	}
	return Characteristic{}, fmt.Errorf("plateau: no characteristic for %s at plateau %d", f, p)
}
