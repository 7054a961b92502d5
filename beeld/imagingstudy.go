package beeld

import (
	"encoding/json"
	"fmt"
	"regexp"
)

// StudyView is what the holder learnt of one study from the PACS: the
// study-level QIDO-RS answer, and per series its series-level answer and
// its instances.
type StudyView struct {
	Study  Dataset
	Series []SeriesView
}

// SeriesView is one series of a StudyView.
type SeriesView struct {
	Series    Dataset
	Instances []Dataset
}

// ViewOf is what a holder learns of st from a PACS serving it at base:
// the QIDO-RS answers of the study, its series and their instances.
func ViewOf(st *Study, base string) StudyView {
	v := StudyView{Study: studyDataset(st, base)}
	for _, se := range st.Series {
		sv := SeriesView{Series: seriesDataset(st, se, base)}
		for _, in := range se.Instances {
			sv.Instances = append(sv.Instances, instanceDataset(st, se, in, base))
		}
		v.Series = append(v.Series, sv)
	}
	return v
}

// idPattern is a FHIR id; a DICOM UID (digits and dots, at most 64) is one.
var idPattern = regexp.MustCompile(`^[A-Za-z0-9\-.]{1,64}$`)

// ImagingStudy maps a study to a FHIR R4 ImagingStudy: identifier the
// Study Instance UID (urn:dicom:uid) and the accession number, subject the
// patient by BSN, the series and instances, and endpoint a contained
// Endpoint of connection type dicom-wado-rs whose address is dicomweb (the
// node's DICOMweb proxy for the participant): a client retrieves
// {address}/studies/{uid} there.
func ImagingStudy(v StudyView, dicomweb string) (json.RawMessage, error) {
	s := v.Study
	uid := s.String(TagStudyInstanceUID)
	if !idPattern.MatchString(uid) {
		return nil, fmt.Errorf("%w: the PACS answered a study without a usable Study Instance UID (%q)", ErrUpstream, uid)
	}
	doc := map[string]any{
		"resourceType": "ImagingStudy",
		"id":           uid,
		"contained": []any{map[string]any{
			"resourceType":   "Endpoint",
			"id":             "dicomweb",
			"status":         "active",
			"connectionType": map[string]any{"system": SystemConnectionType, "code": ConnectionWADORS},
			"payloadType": []any{map[string]any{"coding": []any{map[string]any{
				"system": "http://terminology.hl7.org/CodeSystem/endpoint-payload-type", "code": "DICOM"}}}},
			"payloadMimeType": []string{MediaDICOM},
			"address":         dicomweb,
		}},
		"identifier": identifiers(uid, s.String(TagAccessionNumber)),
		"status":     "available",
		"endpoint":   []any{map[string]any{"reference": "#dicomweb"}},
	}
	subject := map[string]any{"identifier": map[string]any{"system": SystemBSN, "value": s.String(TagPatientID)}}
	if name := displayName(s.String(TagPatientName)); name != "" {
		subject["display"] = name // FHIR forbids an empty string
	}
	doc["subject"] = subject
	if mods := s.Strings(TagModalitiesInStudy); len(mods) > 0 {
		var cs []any
		for _, m := range mods {
			cs = append(cs, map[string]any{"system": SystemDCM, "code": m})
		}
		doc["modality"] = cs
	}
	if d := fhirDate(s.String(TagStudyDate)); d != "" {
		doc["started"] = d
	}
	if d := s.String(TagStudyDescription); d != "" {
		doc["description"] = d
	}
	instances := 0
	var series []any
	for _, sv := range v.Series {
		se := sv.Series
		item := map[string]any{
			"uid":      se.String(TagSeriesInstanceUID),
			"modality": map[string]any{"system": SystemDCM, "code": se.String(TagModality)},
		}
		if n := se.Int(TagSeriesNumber); n > 0 {
			item["number"] = n
		}
		if d := se.String(TagSeriesDescription); d != "" {
			item["description"] = d
		}
		var ins []any
		for _, in := range sv.Instances {
			i := map[string]any{
				"uid":      in.String(TagSOPInstanceUID),
				"sopClass": map[string]any{"system": "urn:ietf:rfc:3986", "code": "urn:oid:" + in.String(TagSOPClassUID)},
			}
			if n := in.Int(TagInstanceNumber); n > 0 {
				i["number"] = n
			}
			ins = append(ins, i)
		}
		count := se.Int(TagNumberOfSeriesInstance)
		if len(ins) > 0 {
			item["instance"] = ins
			count = len(ins)
		}
		if count > 0 {
			item["numberOfInstances"] = count
		}
		instances += count
		series = append(series, item)
	}
	if len(series) > 0 {
		doc["series"] = series
		doc["numberOfSeries"] = len(series)
	} else if n := s.Int(TagNumberOfStudySeries); n > 0 {
		doc["numberOfSeries"] = n
	}
	if instances == 0 {
		instances = s.Int(TagNumberOfStudyInstances)
	}
	if instances > 0 {
		doc["numberOfInstances"] = instances
	}
	return json.Marshal(doc)
}

func identifiers(uid, accession string) []any {
	out := []any{map[string]any{"system": SystemDICOMUID, "value": "urn:oid:" + uid}}
	if accession != "" {
		out = append(out, map[string]any{
			"type":  map[string]any{"coding": []any{map[string]any{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "ACSN"}}},
			"value": accession,
		})
	}
	return out
}

// displayName turns a DICOM PN (family^given^middle^prefix^suffix) into
// "given family".
func displayName(pn string) string {
	parts := make([]string, 5)
	copy(parts, splitCaret(pn))
	switch {
	case parts[1] != "" && parts[0] != "":
		return parts[1] + " " + parts[0]
	case parts[0] != "":
		return parts[0]
	}
	return parts[1]
}

func splitCaret(s string) []string {
	var out []string
	start := 0
	for i := 0; i < len(s); i++ {
		if s[i] == '^' {
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return append(out, s[start:])
}

// fhirDate turns a DICOM DA (YYYYMMDD) into a FHIR date; "" when it is not one.
func fhirDate(da string) string {
	if len(da) != 8 {
		return ""
	}
	for i := 0; i < 8; i++ {
		if da[i] < '0' || da[i] > '9' {
			return ""
		}
	}
	return da[:4] + "-" + da[4:6] + "-" + da[6:]
}

// SearchBundle wraps ImagingStudy resources in an R4 searchset Bundle.
func SearchBundle(base, self string, studies []json.RawMessage) ([]byte, error) {
	entries := make([]any, 0, len(studies))
	for _, s := range studies {
		var h struct{ ID string }
		if err := json.Unmarshal(s, &h); err != nil {
			return nil, err
		}
		entries = append(entries, map[string]any{"fullUrl": base + "/ImagingStudy/" + h.ID, "resource": s,
			"search": map[string]string{"mode": "match"}})
	}
	return json.Marshal(map[string]any{
		"resourceType": "Bundle", "type": "searchset", "total": len(studies),
		"link":  []any{map[string]string{"relation": "self", "url": self}},
		"entry": entries,
	})
}
