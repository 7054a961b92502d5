package demo

import (
	"encoding/json"
	"fmt"
	"strings"
)

// R4 systems that replaced their STU3 spelling (FHIR R4, terminology.hl7.org).
const (
	obsCatR4          = "http://terminology.hl7.org/CodeSystem/observation-category"
	actCodeR4         = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
	conditionClinical = "http://terminology.hl7.org/CodeSystem/condition-clinical"
	conditionVerStat  = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
	allergyClinical   = "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical"
	allergyVerStat    = "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification"
	consentScope      = "http://terminology.hl7.org/CodeSystem/consentscope"
	organizationType  = "http://terminology.hl7.org/CodeSystem/organization-type"

	// nlCoreR4 is where the nictiz-r4-zib2020 profiles live.
	nlCoreR4 = "http://nictiz.nl/fhir/StructureDefinition/nl-core-"
)

// profilesR4 are the zib2020 nl-core profiles (nictiz-r4-zib2020) of the
// zib2017 profiles the STU3 data claims, by the STU3 profile's last path
// segment. A resource claims the R4 profile of its zib and no other.
var profilesR4 = map[string]string{
	"nl-core-patient":                      "Patient",
	"nl-core-organization":                 "HealthcareProvider-Organization",
	"nl-core-practitioner":                 "HealthProfessional-Practitioner",
	"nl-core-practitionerrole":             "HealthProfessional-PractitionerRole",
	"nl-core-careteam":                     "CareTeam",
	"zib-Payer":                            "Payer",
	"zib-AdvanceDirective":                 "AdvanceDirective",
	"zib-TreatmentDirective":               "TreatmentDirective2",
	"zib-FunctionalOrMentalStatus":         "FunctionalOrMentalStatus",
	"zib-Problem":                          "Problem",
	"zib-LivingSituation":                  "LivingSituation",
	"zib-DrugUse":                          "DrugUse",
	"zib-AlcoholUse":                       "AlcoholUse",
	"zib-TobaccoUse":                       "TobaccoUse",
	"zib-NutritionAdvice":                  "NutritionAdvice",
	"zib-Alert":                            "Alert",
	"zib-AllergyIntolerance":               "AllergyIntolerance",
	"zib-Product":                          "PharmaceuticalProduct",
	"zib-MedicationUse":                    "MedicationUse2",
	"zib-MedicationAgreement":              "MedicationAgreement",
	"zib-AdministrationAgreement":          "AdministrationAgreement",
	"zib-MedicalDeviceProduct":             "MedicalDevice.Product",
	"zib-MedicalDevice":                    "MedicalDevice",
	"zib-Vaccination":                      "Vaccination-event",
	"zib-BloodPressure":                    "BloodPressure",
	"zib-BodyWeight":                       "BodyWeight",
	"zib-BodyHeight":                       "BodyHeight",
	"zib-LaboratoryTestResult-Observation": "LaboratoryTestResult",
	"zib-Encounter":                        "Encounter",
	"zib-Procedure":                        "Procedure-event",
	"zib-ProcedureRequest":                 "Procedure-request",
}

// R4 returns the patient's resources as FHIR R4 with the zib2020 nl-core
// profiles: the same patient, the same facts, in the R4 shape of each
// resource (ProcedureRequest as ServiceRequest, statuses as
// CodeableConcepts, the R4 code systems). Patients from Generate convert
// without error; R4 reports the resource it could not convert.
func R4(p Patient) (Patient, error) {
	out := Patient{BSN: p.BSN, Name: p.Name, Resources: make([]json.RawMessage, 0, len(p.Resources))}
	for _, raw := range p.Resources {
		var r map[string]any
		if err := json.Unmarshal(raw, &r); err != nil {
			return Patient{}, fmt.Errorf("demo: R4 of patient %s: %w", p.BSN, err)
		}
		if err := toR4(r); err != nil {
			return Patient{}, fmt.Errorf("demo: R4 of %v/%v: %w", r["resourceType"], r["id"], err)
		}
		b, err := json.Marshal(r)
		if err != nil {
			return Patient{}, err
		}
		out.Resources = append(out.Resources, b)
	}
	return out, nil
}

// GenerateR4 is Generate with every patient in R4 (R4).
func GenerateR4(opts Options) ([]Patient, error) {
	ps, err := Generate(opts)
	if err != nil {
		return nil, err
	}
	for i, p := range ps {
		if ps[i], err = R4(p); err != nil {
			return nil, err
		}
	}
	return ps, nil
}

func toR4(r map[string]any) error {
	if err := profileR4(r); err != nil {
		return err
	}
	rewrite(r)
	switch r["resourceType"] {
	case "Flag":
		toArray(r, "category")
	case "Condition":
		statusConcept(r, "clinicalStatus", conditionClinical)
		statusConcept(r, "verificationStatus", conditionVerStat)
	case "AllergyIntolerance":
		statusConcept(r, "clinicalStatus", allergyClinical)
		statusConcept(r, "verificationStatus", allergyVerStat)
		move(r, "assertedDate", "recordedDate")
	case "Consent":
		scope := "adr"
		if strings.Contains(fmt.Sprint(r["meta"]), "TreatmentDirective") {
			scope = "treatment"
		}
		r["scope"] = map[string]any{"coding": []any{map[string]any{"system": consentScope, "code": scope}}}
		if p, ok := r["period"]; ok {
			r["provision"] = map[string]any{"period": p}
			delete(r, "period")
		}
	case "MedicationStatement":
		delete(r, "taken")
	case "MedicationRequest":
		toArray(r, "category")
		if _, ok := r["status"]; !ok {
			r["status"] = "active"
		}
		if req, ok := r["requester"].(map[string]any); ok {
			if agent, ok := req["agent"]; ok {
				r["requester"] = agent
			}
		}
	case "MedicationDispense":
		if _, ok := r["status"]; !ok {
			r["status"] = "completed"
		}
	case "NutritionOrder":
		if _, ok := r["intent"]; !ok {
			r["intent"] = "order"
		}
	case "DeviceUseStatement":
		move(r, "whenUsed", "timingPeriod")
	case "Immunization":
		delete(r, "notGiven")
		move(r, "date", "occurrenceDateTime")
	case "Observation":
		if rel, ok := r["related"].([]any); ok {
			var members []any
			for _, x := range rel {
				if m, ok := x.(map[string]any); ok && m["target"] != nil {
					members = append(members, m["target"])
				}
			}
			delete(r, "related")
			if len(members) > 0 {
				r["hasMember"] = members
			}
		}
	case "ProcedureRequest":
		r["resourceType"] = "ServiceRequest"
		if req, ok := r["requester"].(map[string]any); ok {
			if agent, ok := req["agent"]; ok {
				r["requester"] = agent
			}
		}
	case "Procedure":
		delete(r, "notDone")
		if ps, ok := r["performer"].([]any); ok {
			for _, x := range ps {
				if m, ok := x.(map[string]any); ok {
					move(m, "role", "function")
				}
			}
		}
	case "Encounter":
		move(r, "reason", "reasonCode")
	case "CareTeam":
		if ps, ok := r["participant"].([]any); ok {
			for _, x := range ps {
				if m, ok := x.(map[string]any); ok {
					if role, ok := m["role"].(map[string]any); ok {
						m["role"] = []any{role}
					}
				}
			}
		}
	case "Medication":
		delete(r, "isBrand")
		delete(r, "isOverTheCounter")
		delete(r, "package")
	}
	return nil
}

// profileR4 replaces the STU3 profiles with the zib's R4 profile.
func profileR4(r map[string]any) error {
	meta, _ := r["meta"].(map[string]any)
	if meta == nil {
		return nil
	}
	ps, _ := meta["profile"].([]any)
	var out []any
	for _, p := range ps {
		s, _ := p.(string)
		seg := s[strings.LastIndexByte(s, '/')+1:]
		if strings.HasPrefix(seg, "BgZ-") {
			continue // the BgZ MSZ 2017 profiles have no zib2020 counterpart; the zib's profile says it
		}
		name, ok := profilesR4[seg]
		if !ok {
			return fmt.Errorf("no zib2020 profile for %s", s)
		}
		out = append(out, nlCoreR4+name)
	}
	if len(out) == 0 {
		delete(r, "meta")
		return nil
	}
	meta["profile"] = out
	return nil
}

// rewrite walks the resource and writes the R4 spelling of the code
// systems and references STU3 spelled otherwise.
func rewrite(v any) {
	switch x := v.(type) {
	case map[string]any:
		for k, c := range x {
			switch s := c.(type) {
			case string:
				switch {
				case k == "system" && s == obsCat:
					x[k] = obsCatR4
				case k == "system" && s == actCode:
					x[k] = actCodeR4
				case k == "system" && s == "http://hl7.org/fhir/organization-type":
					x[k] = organizationType
				case k == "reference" && strings.HasPrefix(s, "ProcedureRequest/"):
					x[k] = "ServiceRequest/" + strings.TrimPrefix(s, "ProcedureRequest/")
				}
			default:
				rewrite(c)
			}
		}
	case []any:
		for _, c := range x {
			rewrite(c)
		}
	}
}

// statusConcept turns an STU3 code element into the R4 CodeableConcept of system.
func statusConcept(r map[string]any, key, system string) {
	if s, ok := r[key].(string); ok {
		r[key] = map[string]any{"coding": []any{map[string]any{"system": system, "code": s}}}
	}
}

func move(r map[string]any, from, to string) {
	if v, ok := r[from]; ok {
		r[to] = v
		delete(r, from)
	}
}

// toArray makes an element that repeats in R4 (0..1 in STU3) an array.
func toArray(r map[string]any, key string) {
	if v, ok := r[key]; ok {
		if _, isArr := v.([]any); !isArr {
			r[key] = []any{v}
		}
	}
}
