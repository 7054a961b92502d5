package demo

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/schakel-nl/schakel/nl"
)

// Profiles, code systems and extensions as the Nictiz BgZ MSZ 2.0 fixtures
// use them.
const (
	zib    = "http://nictiz.nl/fhir/StructureDefinition/"
	nlCore = "http://fhir.nl/fhir/StructureDefinition/"

	sct        = "http://snomed.info/sct"
	loinc      = "http://loinc.org"
	ucum       = "http://unitsofmeasure.org"
	atc        = "http://www.whocc.no/atc"
	obsCat     = "http://hl7.org/fhir/observation-category"
	actCode    = "http://hl7.org/fhir/v3/ActCode"
	systemUZOV = "http://fhir.nl/fhir/NamingSystem/uzovi"

	medicationUseCategory = "urn:oid:2.16.840.1.113883.2.4.3.11.60.20.77.5.3"
	coverageType          = "urn:oid:2.16.840.1.113883.2.4.3.11.60.101.5.1"
	livingSituationCodes  = "urn:oid:2.16.840.1.113883.2.4.3.11.60.40.4.13.1"
	advanceDirectiveTypes = "urn:oid:2.16.840.1.113883.2.4.3.11.60.40.4.14.1"
	yesNo                 = "urn:oid:2.16.840.1.113883.2.4.3.11.60.40.4"

	extRoleRef     = "http://nictiz.nl/fhir/StructureDefinition/practitionerrole-reference"
	extOwnPrefix   = "http://hl7.org/fhir/StructureDefinition/humanname-own-prefix"
	extOwnName     = "http://hl7.org/fhir/StructureDefinition/humanname-own-name"
	extAssembly    = "http://hl7.org/fhir/StructureDefinition/humanname-assembly-order"
	extENQualifier = "http://hl7.org/fhir/StructureDefinition/iso21090-EN-qualifier"
)

// Small invented-looking but plausible Dutch name lists.
var (
	givenMale   = []string{"Jan", "Pieter", "Kees", "Henk", "Daan", "Bram", "Willem", "Joost", "Ruud", "Sem"}
	givenFemale = []string{"Anna", "Maria", "Sanne", "Lotte", "Emma", "Femke", "Ingrid", "Julia", "Noor", "Els"}
	families    = []struct{ prefix, name string }{
		{"", "Jansen"}, {"de", "Vries"}, {"van", "Dijk"}, {"", "Bakker"}, {"", "Visser"},
		{"", "Smit"}, {"", "Meijer"}, {"de", "Boer"}, {"", "Mulder"}, {"de", "Groot"},
		{"", "Bos"}, {"van den", "Berg"}, {"van", "Leeuwen"}, {"", "Dekker"}, {"", "Brouwer"},
	}
	streets = []string{"Proefstraat", "Testlaan", "Demoweg", "Voorbeeldkade", "Oefenpad"}
	cities  = []string{"Demodorp", "Testerveen", "Proefhuizen", "Oefenwoude"}
)

type code struct{ system, code, display string }

// A problem with the medicine that treats it, so the medication blocks read
// as one story.
var problems = []struct {
	problem code
	drug    code
	dosage  string
}{
	{code{sct, "44054006", "Diabetes mellitus type 2"}, code{atc, "A10BA02", "Metformine 500 mg tablet"}, "2 maal per dag 1 tablet"},
	{code{sct, "38341003", "Hypertensie"}, code{atc, "C08CA01", "Amlodipine 5 mg tablet"}, "1 maal per dag 1 tablet"},
	{code{sct, "13645005", "COPD"}, code{atc, "R03BB04", "Tiotropium 18 microgram inhalatiepoeder"}, "1 maal per dag 1 inhalatie"},
	{code{sct, "49436004", "Atriumfibrilleren"}, code{atc, "C07AB02", "Metoprolol 50 mg tablet"}, "1 maal per dag 1 tablet"},
	{code{sct, "396275006", "Artrose"}, code{atc, "N02BE01", "Paracetamol 500 mg tablet"}, "zo nodig 3 maal per dag 2 tabletten"},
	{code{sct, "35489007", "Depressieve stoornis"}, code{atc, "N06AB06", "Sertraline 50 mg tablet"}, "1 maal per dag 1 tablet"},
}

var (
	allergies = []code{
		{sct, "91936005", "Allergie voor penicilline"},
		{sct, "91935009", "Allergie voor pinda"},
		{sct, "300913006", "Allergie voor schaaldieren"},
	}
	devices = []code{
		{sct, "58938008", "Rolstoel"},
		{sct, "6012004", "Hoortoestel"},
		{sct, "50121007", "Bril"},
	}
	procedures = []code{
		{sct, "80146002", "Appendectomie"},
		{sct, "38102005", "Cholecystectomie"},
		{sct, "609588000", "Totale knieprothese"},
	}
	plannedProcedures = []code{
		{sct, "73761001", "Coloscopie"},
		{sct, "40701008", "Echocardiografie"},
		{sct, "71651007", "Mammografie"},
	}
	vaccines = []code{
		{atc, "J07BB02", "Influenza, geïnactiveerd"},
		{atc, "J07BN01", "COVID-19, RNA-vaccin"},
		{atc, "J07AL01", "Pneumokokken"},
	}
	alerts = []code{
		{sct, "129839007", "Verhoogd valrisico"},
		{sct, "182764009", "Gebruikt antistolling"},
	}
	treatments = []code{
		{sct, "89666000", "Reanimatie"},
		{sct, "305351004", "Opname op intensive care"},
	}
	livingSituations = []code{
		{livingSituationCodes, "BENEDENW", "Benedenwoning"},
		{livingSituationCodes, "FLATW", "Appartement of flatwoning"},
		{livingSituationCodes, "WOONB", "Woonboot"},
	}
	tobacco = []code{
		{sct, "266919005", "Nooit gerookt"},
		{sct, "8517006", "Ex-roker"},
		{sct, "449868002", "Rookt dagelijks"},
	}
	alcohol = []code{
		{sct, "105542008", "Drinkt geen alcohol"},
		{sct, "219006", "Drinkt alcohol"},
		{sct, "82581004", "Dronk vroeger alcohol"},
	}
	drugs = []code{
		{sct, "228367002", "Gebruikt geen drugs"},
		{sct, "44870007", "Heeft in het verleden drugs gebruikt"},
	}
	limitations = []code{
		{sct, "260413007", "Geen"},
		{sct, "255604002", "Licht"},
		{sct, "6736007", "Matig"},
	}
	diets    = []string{"Zoutbeperkt", "Vezelrijk", "Eiwitverrijkt", "Koolhydraatbeperkt"}
	insurers = []string{"Zorgverzekeraar Proefzeker", "Demo Zorgverzekeringen", "Testverzekeraar Onderling"}
	// Hospital specialists: name, UZI role code and its display.
	specialists = []struct{ family, given, role, roleDisplay string }{
		{"Voorbeeld", "Karin", "01.016", "Internist"},
		{"Proefmans", "Erik", "01.010", "Cardioloog"},
		{"Testhuis", "Mirjam", "01.023", "Longarts"},
	}
)

// generator builds the resources of one patient.
type generator struct {
	opts Options
	rng  *rand.Rand
	n    int
	bsn  string
	out  []json.RawMessage
	err  error
}

// id is the id of one of the patient's own resources.
func (g *generator) id(kind string) string {
	return fmt.Sprintf("%s-%d-%s", g.opts.IDPrefix, g.n, kind)
}

// shared is the id of a resource all patients of a set refer to (practice,
// hospital, specialists, insurers); its content is the same in every bundle.
func (g *generator) shared(kind string) string {
	return g.opts.IDPrefix + "-" + kind
}

func ref(typ, id string) obj { return obj{{"reference", typ + "/" + id}} }

func refDisplay(typ, id, display string) obj {
	return obj{{"reference", typ + "/" + id}, {"display", display}}
}

func coding(c code) obj { return obj{{"system", c.system}, {"code", c.code}, {"display", c.display}} }

func concept(cs ...code) obj {
	codings := make(arr, len(cs))
	for i, c := range cs {
		codings[i] = coding(c)
	}
	return obj{{"coding", codings}}
}

func quantity(v float64, unit string) obj {
	return obj{{"value", v}, {"unit", unit}, {"system", ucum}, {"code", unit}}
}

func (g *generator) pick(n int) int { return g.rng.IntN(n) }

// between returns a value in [lo, hi) rounded to the given decimals.
func (g *generator) between(lo, hi float64, decimals int) float64 {
	v := lo + g.rng.Float64()*(hi-lo)
	scale := 1.0
	for range decimals {
		scale *= 10
	}
	return float64(int(v*scale+0.5)) / scale
}

func (g *generator) day(daysAgo int) string {
	return g.opts.Reference.AddDate(0, 0, -daysAgo).Format(time.DateOnly)
}

func (g *generator) instant(daysAgo, hour, minute int) string {
	t := g.opts.Reference.AddDate(0, 0, -daysAgo)
	return time.Date(t.Year(), t.Month(), t.Day(), hour, minute, 0, 0, time.UTC).Format(time.RFC3339)
}

// add writes one resource: resourceType, id and meta.profile first.
func (g *generator) add(resourceType, id string, profiles []string, fields ...kv) {
	if g.err != nil {
		return
	}
	r := obj{{"resourceType", resourceType}, {"id", id}}
	if len(profiles) > 0 {
		r = append(r, kv{"meta", obj{{"profile", profiles}}})
	}
	b, err := json.Marshal(append(r, fields...))
	if err != nil {
		g.err = fmt.Errorf("demo: %s/%s: %w", resourceType, id, err)
		return
	}
	g.out = append(g.out, b)
}

func humanName(given, prefix, family string) obj {
	full := family
	familyExt := arr{obj{{"url", extOwnName}, {"valueString", family}}}
	if prefix != "" {
		full = prefix + " " + family
		familyExt = arr{obj{{"url", extOwnPrefix}, {"valueString", prefix}}, familyExt[0]}
	}
	return obj{
		{"extension", arr{obj{{"url", extAssembly}, {"valueCode", "NL1"}}}},
		{"text", given + " " + full},
		{"family", full},
		{"_family", obj{{"extension", familyExt}}},
		{"given", arr{given}},
		{"_given", arr{obj{{"extension", arr{obj{{"url", extENQualifier}, {"valueCode", "BR"}}}}}}},
	}
}

func (g *generator) patient() (Patient, error) {
	male := g.pick(2) == 0
	given := givenFemale[g.pick(len(givenFemale))]
	if male {
		given = givenMale[g.pick(len(givenMale))]
	}
	fam := families[g.pick(len(families))]
	display := given + " " + fam.name
	if fam.prefix != "" {
		display = given + " " + fam.prefix + " " + fam.name
	}
	age := 25 + g.pick(65)
	birth := g.opts.Reference.AddDate(-age, -g.pick(12), -g.pick(28))
	patientID := g.id("patient")
	patientRef := refDisplay("Patient", patientID, display)

	// Shared parties first, so that the Patient can refer to them.
	gp := g.practice()
	hospital, specialist, specialistRole := g.hospital()
	payer := g.insurer()

	gender := "female"
	if male {
		gender = "male"
	}
	g.add("Patient", patientID, []string{nlCore + "nl-core-patient", zib + "BgZ-Patient"},
		kv{"identifier", arr{obj{{"system", nl.SystemBSN}, {"value", g.bsn}}}},
		kv{"name", arr{humanName(given, fam.prefix, fam.name)}},
		kv{"telecom", arr{obj{{"system", "phone"}, {"value", fmt.Sprintf("06-9999%04d", g.pick(10000))}, {"use", "home"}}}},
		kv{"gender", gender},
		kv{"birthDate", birth.Format(time.DateOnly)},
		kv{"address", arr{obj{
			{"use", "home"},
			{"type", "physical"},
			{"line", arr{fmt.Sprintf("%s %d", streets[g.pick(len(streets))], 1+g.pick(200))}},
			{"city", cities[g.pick(len(cities))]},
			{"postalCode", fmt.Sprintf("9999%c%c", 'A'+rune(g.pick(26)), 'A'+rune(g.pick(26)))},
			{"country", "NL"},
		}}},
		kv{"generalPractitioner", arr{
			obj{
				{"extension", arr{obj{{"url", extRoleRef}, {"valueReference", ref("PractitionerRole", gp.role)}}}},
				{"reference", "Practitioner/" + gp.practitioner},
				{"display", gp.name},
			},
			refDisplay("Organization", gp.organization, g.opts.GPName),
		}},
	)
	// The parties above were written first; put the Patient in front.
	if g.err == nil {
		last := g.out[len(g.out)-1]
		copy(g.out[1:], g.out[:len(g.out)-1])
		g.out[0] = last
	}

	// Payer.
	start := g.opts.Reference.AddDate(0, -g.pick(12), 0)
	start = time.Date(start.Year(), 1, 1, 0, 0, 0, 0, time.UTC)
	g.add("Coverage", g.id("coverage"), []string{zib + "zib-Payer"},
		kv{"status", "active"},
		kv{"type", concept(code{coverageType, "B", "Basis"})},
		kv{"subscriber", patientRef},
		kv{"subscriberId", fmt.Sprintf("9999%05d", g.pick(100000))},
		kv{"beneficiary", patientRef},
		kv{"period", obj{{"start", start.Format(time.DateOnly)}, {"end", start.AddDate(1, 0, -1).Format(time.DateOnly)}}},
		kv{"payor", arr{refDisplay("Organization", payer.id, payer.name)}},
	)

	// Directives.
	advanceID := g.id("advance-directive")
	g.add("Consent", advanceID, []string{zib + "zib-AdvanceDirective"},
		kv{"status", "active"},
		kv{"category", arr{
			concept(code{sct, "11341000146107", "Living will and advance directive record"}),
			concept(code{advanceDirectiveTypes, "VOL", "Volmacht"}),
		}},
		kv{"patient", patientRef},
		kv{"dateTime", g.day(400 + g.pick(2000))},
		kv{"policy", arr{obj{{"uri", "http://wetten.overheid.nl/"}}}},
	)
	permitted := code{yesNo, "JA", "Ja"}
	if g.pick(2) == 0 {
		permitted = code{yesNo, "NEE", "Nee"}
	}
	g.add("Consent", g.id("treatment-directive"), []string{zib + "zib-TreatmentDirective"},
		kv{"extension", arr{obj{{"url", zib + "zib-TreatmentDirective-Treatment"}, {"valueCodeableConcept", concept(treatments[g.pick(len(treatments))])}}}},
		kv{"modifierExtension", arr{obj{{"url", zib + "zib-TreatmentDirective-TreatmentPermitted"}, {"valueCodeableConcept", concept(permitted)}}}},
		kv{"status", "active"},
		kv{"category", arr{concept(code{sct, "11291000146105", "Treatment instructions"})}},
		kv{"patient", patientRef},
		kv{"period", obj{{"start", g.day(300 + g.pick(1000))}}},
		kv{"sourceReference", ref("Consent", advanceID)},
		kv{"policy", arr{obj{{"uri", "http://wetten.overheid.nl/"}}}},
	)

	// Functional status, problem, lifestyle.
	g.add("Observation", g.id("functional-status"), []string{zib + "zib-FunctionalOrMentalStatus"},
		kv{"status", "final"},
		kv{"category", arr{concept(code{sct, "118228005", "Functional finding"})}},
		kv{"code", concept(code{sct, "129006008", "Lopen"})},
		kv{"subject", patientRef},
		kv{"effectiveDateTime", g.day(30 + g.pick(300))},
		kv{"valueCodeableConcept", concept(limitations[g.pick(len(limitations))])},
	)
	prob := problems[g.pick(len(problems))]
	problemID := g.id("problem")
	onset := 200 + g.pick(3000)
	g.add("Condition", problemID, []string{zib + "zib-Problem", zib + "BgZ-Problem"},
		kv{"clinicalStatus", "active"},
		kv{"verificationStatus", "confirmed"},
		kv{"category", arr{concept(code{sct, "282291009", "Diagnose"})}},
		kv{"code", concept(prob.problem)},
		kv{"subject", patientRef},
		kv{"onsetDateTime", g.day(onset)},
	)
	lifestyle := []struct {
		kind, profile string
		what          code
		value         code
	}{
		{"living-situation", "zib-LivingSituation", code{sct, "365508006", "Residence and accommodation circumstances"}, livingSituations[g.pick(len(livingSituations))]},
		{"drug-use", "zib-DrugUse", code{sct, "228366006", "Finding relating to drug misuse behavior"}, drugs[g.pick(len(drugs))]},
		{"alcohol-use", "zib-AlcoholUse", code{sct, "228273003", "Finding relating to alcohol drinking behavior"}, alcohol[g.pick(len(alcohol))]},
		{"tobacco-use", "zib-TobaccoUse", code{sct, "365980008", "Tobacco use and exposure"}, tobacco[g.pick(len(tobacco))]},
	}
	for _, l := range lifestyle {
		g.add("Observation", g.id(l.kind), []string{zib + l.profile},
			kv{"status", "final"},
			kv{"code", concept(l.what)},
			kv{"subject", patientRef},
			kv{"effectiveDateTime", g.day(60 + g.pick(300))},
			kv{"valueCodeableConcept", concept(l.value)},
		)
	}
	g.add("NutritionOrder", g.id("nutrition-advice"), []string{zib + "zib-NutritionAdvice"},
		kv{"status", "active"},
		kv{"patient", patientRef},
		kv{"dateTime", g.instant(20+g.pick(200), 10, 0)},
		kv{"oralDiet", obj{{"type", arr{obj{{"text", diets[g.pick(len(diets))]}}}}}},
	)
	g.add("Flag", g.id("alert"), []string{zib + "zib-Alert"},
		kv{"status", "active"},
		kv{"category", concept(code{loinc, "75323-6", "Condition"})},
		kv{"code", concept(alerts[g.pick(len(alerts))])},
		kv{"subject", patientRef},
		kv{"period", obj{{"start", g.day(100 + g.pick(1000))}}},
	)
	g.add("AllergyIntolerance", g.id("allergy"), []string{zib + "zib-AllergyIntolerance"},
		kv{"clinicalStatus", "active"},
		kv{"verificationStatus", "confirmed"},
		kv{"category", arr{"medication"}},
		kv{"criticality", "high"},
		kv{"code", concept(allergies[g.pick(len(allergies))])},
		kv{"patient", patientRef},
		kv{"assertedDate", g.day(500 + g.pick(3000))},
	)

	// Medication: one medicine, used, agreed and set out for administration.
	medicationID := g.id("medication")
	g.add("Medication", medicationID, []string{zib + "zib-Product"},
		kv{"code", obj{{"coding", arr{coding(prob.drug)}}, {"text", prob.drug.display}}},
	)
	medStart := g.day(onset - 10)
	dosage := obj{{"text", prob.dosage}}
	g.add("MedicationStatement", g.id("medication-use"), []string{zib + "zib-MedicationUse"},
		kv{"status", "active"},
		kv{"category", obj{{"coding", arr{obj{{"system", medicationUseCategory}, {"code", "6"}, {"display", "Medicatiegebruik"}}}}, {"text", "Medicatiegebruik"}}},
		kv{"medicationReference", refDisplay("Medication", medicationID, prob.drug.display)},
		kv{"effectivePeriod", obj{{"start", medStart}}},
		kv{"dateAsserted", g.instant(10+g.pick(60), 9, 30)},
		kv{"subject", patientRef},
		kv{"taken", "y"},
		kv{"reasonReference", arr{ref("Condition", problemID)}},
		kv{"dosage", arr{dosage}},
	)
	g.add("MedicationRequest", g.id("medication-agreement"), []string{zib + "zib-MedicationAgreement"},
		kv{"intent", "order"},
		kv{"category", obj{{"coding", arr{coding(code{sct, "16076005", "Prescription"})}}, {"text", "Medicatieafspraak"}}},
		kv{"medicationReference", refDisplay("Medication", medicationID, prob.drug.display)},
		kv{"subject", patientRef},
		kv{"authoredOn", g.instant(onset-10, 11, 15)},
		kv{"requester", obj{
			{"extension", arr{obj{{"url", zib + "zib-MedicationAgreement-RequesterRole"}, {"valueReference", ref("PractitionerRole", gp.role)}}}},
			{"agent", refDisplay("Practitioner", gp.practitioner, gp.name)},
		}},
		kv{"reasonReference", arr{ref("Condition", problemID)}},
		kv{"dosageInstruction", arr{dosage}},
	)
	g.add("MedicationDispense", g.id("administration-agreement"), []string{zib + "zib-AdministrationAgreement"},
		kv{"category", obj{{"coding", arr{coding(code{sct, "422037009", "Provider medication administration instructions"})}}, {"text", "Toedieningsafspraak"}}},
		kv{"medicationReference", refDisplay("Medication", medicationID, prob.drug.display)},
		kv{"subject", patientRef},
		kv{"performer", arr{obj{{"actor", refDisplay("Organization", hospital.organization, hospital.name)}}}},
		kv{"dosageInstruction", arr{dosage}},
	)

	// Medical aid.
	deviceID := g.id("device")
	dev := devices[g.pick(len(devices))]
	g.add("Device", deviceID, []string{zib + "zib-MedicalDeviceProduct"},
		kv{"status", "active"},
		kv{"type", concept(dev)},
		kv{"patient", patientRef},
	)
	g.add("DeviceUseStatement", g.id("medical-aid"), []string{zib + "zib-MedicalDevice"},
		kv{"status", "active"},
		kv{"subject", patientRef},
		kv{"whenUsed", obj{{"start", g.day(100 + g.pick(1500))}}},
		kv{"device", refDisplay("Device", deviceID, dev.display)},
	)

	g.add("Immunization", g.id("vaccination"), []string{zib + "zib-Vaccination"},
		kv{"status", "completed"},
		kv{"notGiven", false},
		kv{"vaccineCode", concept(vaccines[g.pick(len(vaccines))])},
		kv{"patient", patientRef},
		kv{"date", g.day(30 + g.pick(700))},
		kv{"primarySource", true},
	)

	g.vitals(patientRef, male)
	g.lab(patientRef, male)

	// Care: an outpatient visit, a past procedure and its order, a planned one.
	g.add("Encounter", g.id("encounter"), []string{zib + "zib-Encounter"},
		kv{"status", "finished"},
		kv{"class", obj{{"system", actCode}, {"code", "AMB"}, {"display", "Ambulatory"}}},
		kv{"subject", patientRef},
		kv{"participant", arr{obj{{"individual", obj{
			{"extension", arr{obj{{"url", extRoleRef}, {"valueReference", ref("PractitionerRole", specialistRole)}}}},
			{"reference", "Practitioner/" + specialist.id},
			{"display", specialist.name},
		}}}}},
		kv{"period", obj{{"start", g.instant(45, 14, 0)}, {"end", g.instant(45, 14, 30)}}},
		kv{"diagnosis", arr{obj{{"condition", ref("Condition", problemID)}}}},
		kv{"serviceProvider", refDisplay("Organization", hospital.organization, hospital.name)},
	)
	orderID := g.id("procedure-order")
	proc := procedures[g.pick(len(procedures))]
	done := 200 + g.pick(2000)
	g.add("ProcedureRequest", orderID, []string{zib + "zib-ProcedureRequest"},
		kv{"status", "completed"},
		kv{"intent", "order"},
		kv{"code", concept(proc)},
		kv{"subject", patientRef},
		kv{"occurrenceDateTime", g.day(done)},
	)
	g.add("Procedure", g.id("procedure"), []string{zib + "zib-Procedure"},
		kv{"basedOn", arr{ref("ProcedureRequest", orderID)}},
		kv{"status", "completed"},
		kv{"category", concept(code{sct, "387713003", "Surgical procedure"})},
		kv{"code", concept(proc)},
		kv{"subject", patientRef},
		kv{"performedPeriod", obj{{"start", g.day(done)}, {"end", g.day(done)}}},
		kv{"performer", arr{obj{{"actor", refDisplay("Organization", hospital.organization, hospital.name)}}}},
	)
	g.add("ProcedureRequest", g.id("planned-procedure"), []string{zib + "zib-ProcedureRequest"},
		kv{"status", "active"},
		kv{"intent", "plan"},
		kv{"code", concept(plannedProcedures[g.pick(len(plannedProcedures))])},
		kv{"subject", patientRef},
		kv{"occurrenceDateTime", g.day(-(14 + g.pick(120)))},
	)
	g.add("CareTeam", g.id("careteam"), []string{nlCore + "nl-core-careteam"},
		kv{"status", "active"},
		kv{"subject", patientRef},
		kv{"participant", arr{
			obj{{"member", obj{
				{"extension", arr{obj{{"url", extRoleRef}, {"valueReference", ref("PractitionerRole", gp.role)}}}},
				{"reference", "Practitioner/" + gp.practitioner},
				{"display", gp.name},
			}}},
			obj{{"member", obj{
				{"extension", arr{obj{{"url", extRoleRef}, {"valueReference", ref("PractitionerRole", specialistRole)}}}},
				{"reference", "Practitioner/" + specialist.id},
				{"display", specialist.name},
			}}},
		}},
		kv{"managingOrganization", arr{refDisplay("Organization", hospital.organization, hospital.name)}},
	)

	if g.err != nil {
		return Patient{}, g.err
	}
	return Patient{BSN: g.bsn, Name: display, Resources: g.out}, nil
}

// vitals adds three dated measurements of blood pressure, weight and height,
// so that $lastn has a latest one to pick.
func (g *generator) vitals(patientRef obj, male bool) {
	vital := concept(code{obsCat, "vital-signs", "Vital Signs"})
	height := g.between(155, 180, 0)
	weight := g.between(55, 95, 1)
	if male {
		height += 12
		weight += 10
	}
	for i, daysAgo := range []int{400, 180, 30} {
		n := fmt.Sprint(i + 1)
		when := g.instant(daysAgo, 9+g.pick(8), 5*g.pick(12))
		g.add("Observation", g.id("blood-pressure-"+n), []string{zib + "zib-BloodPressure"},
			kv{"status", "final"},
			kv{"category", arr{vital}},
			kv{"code", concept(code{loinc, "85354-9", "Blood pressure panel with all children optional"})},
			kv{"subject", patientRef},
			kv{"effectiveDateTime", when},
			kv{"component", arr{
				obj{{"code", concept(code{loinc, "8480-6", "Systolic blood pressure"})}, {"valueQuantity", quantity(g.between(110, 165, 0), "mm[Hg]")}},
				obj{{"code", concept(code{loinc, "8462-4", "Diastolic blood pressure"})}, {"valueQuantity", quantity(g.between(65, 95, 0), "mm[Hg]")}},
			}},
		)
		g.add("Observation", g.id("body-weight-"+n), []string{zib + "zib-BodyWeight"},
			kv{"status", "final"},
			kv{"category", arr{vital}},
			kv{"code", concept(code{loinc, "29463-7", "Body weight"})},
			kv{"subject", patientRef},
			kv{"effectiveDateTime", when},
			kv{"valueQuantity", quantity(weight+g.between(-2, 2, 1), "kg")},
		)
		g.add("Observation", g.id("body-height-"+n), []string{zib + "zib-BodyHeight"},
			kv{"status", "final"},
			kv{"category", arr{vital}},
			kv{"code", concept(code{loinc, "8302-2", "Body height"})},
			kv{"subject", patientRef},
			kv{"effectiveDateTime", when},
			kv{"valueQuantity", quantity(height, "cm")},
		)
	}
}

// lab adds two haemoglobin results, a glucose, and a renal function panel
// whose members (creatinine, eGFR) it points to with related.target.
func (g *generator) lab(patientRef obj, male bool) {
	category := arr{concept(code{obsCat, "laboratory", "Laboratory"}, code{sct, "49581000146104", "Laboratory test finding"})}
	result := func(kind string, what code, value float64, unit string, daysAgo int, related arr) {
		fields := []kv{
			{"status", "final"},
			{"category", category},
			{"code", concept(what)},
			{"subject", patientRef},
			{"effectiveDateTime", g.instant(daysAgo, 8, 30)},
		}
		if unit != "" {
			fields = append(fields, kv{"valueQuantity", quantity(value, unit)})
		}
		if related != nil {
			fields = append(fields, kv{"related", related})
		}
		g.add("Observation", g.id(kind), []string{zib + "zib-LaboratoryTestResult-Observation"}, fields...)
	}
	hbLow := 7.5
	if male {
		hbLow = 8.5
	}
	hb := code{loinc, "59260-0", "Hemoglobin [Moles/volume] in Blood"}
	result("lab-hb-1", hb, g.between(hbLow, hbLow+1.5, 1), "mmol/L", 180, nil)
	result("lab-hb-2", hb, g.between(hbLow, hbLow+1.5, 1), "mmol/L", 30, nil)
	result("lab-glucose", code{loinc, "14749-6", "Glucose [Moles/volume] in Serum or Plasma"}, g.between(4.5, 8.5, 1), "mmol/L", 30, nil)
	result("lab-creatinine", code{loinc, "14682-9", "Creatinine [Moles/volume] in Serum or Plasma"}, g.between(60, 130, 0), "umol/L", 30, nil)
	result("lab-egfr", code{loinc, "62238-1", "Glomerular filtration rate/1.73 sq M.predicted (CKD-EPI)"}, g.between(45, 95, 0), "mL/min/{1.73_m2}", 30, nil)
	result("lab-renal-panel", code{loinc, "24362-6", "Renal function 2000 panel - Serum or Plasma"}, 0, "", 30, arr{
		obj{{"type", "has-member"}, {"target", ref("Observation", g.id("lab-creatinine"))}},
		obj{{"type", "has-member"}, {"target", ref("Observation", g.id("lab-egfr"))}},
	})
}

// party is a practitioner working for an organisation.
type party struct {
	organization, practitioner, role, name string
}

// practice adds the general practice shared by all patients: its
// Organization (named Options.GPName), GP and the GP's PractitionerRole.
// Its content depends on the options only, never on the patient.
func (g *generator) practice() party {
	p := party{
		organization: g.shared("gp-organization"),
		practitioner: g.shared("gp-practitioner"),
		role:         g.shared("gp-practitionerrole"),
		name:         "Huisarts H. Proefdokter",
	}
	g.add("Organization", p.organization, []string{nlCore + "nl-core-organization"},
		kv{"identifier", arr{obj{{"system", nl.SystemURA}, {"value", g.sharedNumber("gp-ura", 8)}}}},
		kv{"type", arr{concept(code{"urn:oid:2.16.840.1.113883.2.4.15.1060", "Z3", "Huisartspraktijk (zelfstandig of groepspraktijk)"})}},
		kv{"name", g.opts.GPName},
		kv{"address", arr{obj{{"use", "work"}, {"line", arr{"Proefstraat 1"}}, {"city", "Demodorp"}, {"postalCode", "9999AA"}, {"country", "NL"}}}},
	)
	g.add("Practitioner", p.practitioner, []string{nlCore + "nl-core-practitioner"},
		kv{"identifier", arr{obj{{"system", nl.SystemUZIPers}, {"value", g.sharedNumber("gp-uzi", 9)}}}},
		kv{"name", arr{humanName("Hanna", "", "Proefdokter")}},
	)
	g.add("PractitionerRole", p.role, []string{nlCore + "nl-core-practitionerrole"},
		kv{"practitioner", refDisplay("Practitioner", p.practitioner, p.name)},
		kv{"organization", refDisplay("Organization", p.organization, g.opts.GPName)},
		kv{"specialty", arr{concept(code{nl.SystemUZIRole, "01.015", "Huisarts"})}},
	)
	return p
}

type specialistRef struct{ id, name string }

// hospital adds the shared hospital and the one specialist (with role) that
// treats this patient.
func (g *generator) hospital() (hospital party, specialist specialistRef, role string) {
	hospital = party{organization: g.shared("hospital"), name: "Demo Ziekenhuis"}
	g.add("Organization", hospital.organization, []string{nlCore + "nl-core-organization"},
		kv{"identifier", arr{obj{{"system", nl.SystemURA}, {"value", g.sharedNumber("hospital-ura", 8)}}}},
		kv{"type", arr{concept(code{"urn:oid:2.16.840.1.113883.2.4.15.1060", "V4", "Ziekenhuis"})}},
		kv{"name", hospital.name},
		kv{"address", arr{obj{{"use", "work"}, {"line", arr{"Testlaan 100"}}, {"city", "Testerveen"}, {"postalCode", "9999ZA"}, {"country", "NL"}}}},
	)
	k := g.pick(len(specialists))
	s := specialists[k]
	specialist = specialistRef{id: g.shared(fmt.Sprintf("specialist-%d", k+1)), name: s.given + " " + s.family}
	role = specialist.id + "-role"
	g.add("Practitioner", specialist.id, []string{nlCore + "nl-core-practitioner"},
		kv{"identifier", arr{obj{{"system", nl.SystemUZIPers}, {"value", g.sharedNumber(specialist.id, 9)}}}},
		kv{"name", arr{humanName(s.given, "", s.family)}},
	)
	g.add("PractitionerRole", role, []string{nlCore + "nl-core-practitionerrole"},
		kv{"practitioner", refDisplay("Practitioner", specialist.id, specialist.name)},
		kv{"organization", refDisplay("Organization", hospital.organization, hospital.name)},
		kv{"specialty", arr{concept(code{nl.SystemUZIRole, s.role, s.roleDisplay})}},
	)
	return hospital, specialist, role
}

type insurer struct{ id, name string }

// insurer adds the patient's health insurer, one of a few shared ones.
func (g *generator) insurer() insurer {
	k := g.pick(len(insurers))
	in := insurer{id: g.shared(fmt.Sprintf("payer-%d", k+1)), name: insurers[k]}
	g.add("Organization", in.id, []string{nlCore + "nl-core-organization"},
		kv{"identifier", arr{obj{{"system", systemUZOV}, {"value", fmt.Sprintf("99%02d", k+1)}}}},
		kv{"type", arr{concept(code{"http://hl7.org/fhir/organization-type", "ins", "Insurance Company"})}},
		kv{"name", in.name},
	)
	return in
}

// sharedNumber returns a number of the given digits that depends only on the
// seed and a label, so shared resources are the same for every patient. It
// starts with 9 to look like the test ranges.
func (g *generator) sharedNumber(label string, digits int) string {
	var h uint64 = 14695981039346656037 // FNV-1a over the label
	for i := 0; i < len(label); i++ {
		h = (h ^ uint64(label[i])) * 1099511628211
	}
	r := rand.New(rand.NewPCG(uint64(g.opts.Seed), h))
	s := "9"
	for len(s) < digits {
		s += fmt.Sprint(r.IntN(10))
	}
	return s
}
