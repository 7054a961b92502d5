package beeld

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"strings"
	"time"

	"github.com/schakel-nl/schakel/beeld"
	"github.com/schakel-nl/schakel/fhir"
	fhirvalidate "github.com/schakel-nl/schakel/fhir/validate"
	"github.com/schakel-nl/schakel/validation"
)

// imagingStudy is what the kit reads of an ImagingStudy.
type imagingStudy struct {
	ResourceType string `json:"resourceType"`
	Identifier   []struct {
		System string `json:"system"`
		Value  string `json:"value"`
	} `json:"identifier"`
	Subject struct {
		Reference  string `json:"reference"`
		Identifier struct {
			System string `json:"system"`
			Value  string `json:"value"`
		} `json:"identifier"`
	} `json:"subject"`
	Contained []struct {
		ResourceType   string `json:"resourceType"`
		ID             string `json:"id"`
		Address        string `json:"address"`
		ConnectionType struct {
			Code string `json:"code"`
		} `json:"connectionType"`
	} `json:"contained"`
	Endpoint []struct {
		Reference string `json:"reference"`
	} `json:"endpoint"`
	Series []struct {
		UID      string `json:"uid"`
		Instance []struct {
			UID string `json:"uid"`
		} `json:"instance"`
	} `json:"series"`
}

// judgeSearch checks an ImagingStudy search's answer: a searchset Bundle
// whose matches are valid R4 ImagingStudy resources of the patient, each
// with its Study Instance UID and a DICOMweb endpoint.
func judgeSearch(ps *validation.Problems, resp *validation.Response, bsn string) []studyRef {
	if resp.Status != 200 {
		ps.Add("HTTP %d, want 200", resp.Status)
		return nil
	}
	ct := strings.ToLower(resp.Header.Get("Content-Type"))
	ps.Check(strings.Contains(ct, "application/fhir+json") || strings.Contains(ct, "application/json"), "Content-Type %q is not FHIR JSON", ct)
	var bundle struct {
		ResourceType string `json:"resourceType"`
		Type         string `json:"type"`
		Entry        []struct {
			Resource json.RawMessage `json:"resource"`
			Search   struct {
				Mode string `json:"mode"`
			} `json:"search"`
		} `json:"entry"`
	}
	if err := resp.JSON(&bundle); err != nil || bundle.ResourceType != "Bundle" || bundle.Type != "searchset" {
		ps.Add("the answer is not a searchset Bundle")
		return nil
	}
	var out []studyRef
	for i, e := range bundle.Entry {
		if e.Search.Mode != "" && e.Search.Mode != "match" {
			continue
		}
		var st imagingStudy
		if err := json.Unmarshal(e.Resource, &st); err != nil || st.ResourceType != "ImagingStudy" {
			ps.Add("entry %d is not an ImagingStudy", i)
			continue
		}
		for _, is := range fhirvalidate.Resource(fhir.R4, e.Resource) {
			if is.Severity == "error" || is.Severity == "fatal" {
				ps.Add("entry %d is not a valid R4 ImagingStudy: %s", i, is.Diagnostics)
				break
			}
		}
		ref := studyRef{series: map[string][]string{}}
		for _, id := range st.Identifier {
			if id.System == beeld.SystemDICOMUID {
				ref.uid = strings.TrimPrefix(id.Value, "urn:oid:")
			}
		}
		ps.Check(ref.uid != "", "entry %d has no identifier %s (the Study Instance UID)", i, beeld.SystemDICOMUID)
		ps.Check(st.Subject.Identifier.System == beeld.SystemBSN && st.Subject.Identifier.Value == bsn || st.Subject.Reference != "" && st.Subject.Identifier.Value == "",
			"entry %d: subject %s|%s is not the patient %s", i, st.Subject.Identifier.System, st.Subject.Identifier.Value, bsn)
		for _, ep := range st.Endpoint {
			id := strings.TrimPrefix(ep.Reference, "#")
			for _, c := range st.Contained {
				if c.ResourceType == "Endpoint" && c.ID == id && c.ConnectionType.Code == beeld.ConnectionWADORS {
					ref.endpoint = c.Address
				}
			}
			if ref.endpoint == "" && !strings.HasPrefix(ep.Reference, "#") && ep.Reference != "" {
				ref.endpoint = ep.Reference
			}
		}
		ps.Check(ref.endpoint != "", "entry %d names no DICOMweb (%s) endpoint", i, beeld.ConnectionWADORS)
		for _, se := range st.Series {
			var ins []string
			for _, in := range se.Instance {
				ins = append(ins, in.UID)
			}
			ref.series[se.UID] = ins
			ref.instances += len(ins)
		}
		out = append(out, ref)
	}
	return out
}

// judgeQIDO checks a QIDO-RS answer: DICOM JSON datasets, each with the
// attributes keys, of the patient where they name one; it returns the
// first key's values.
func judgeQIDO(ps *validation.Problems, resp *validation.Response, bsn string, keys ...string) []string {
	if resp.Status != 200 {
		ps.Add("HTTP %d, want 200", resp.Status)
		return nil
	}
	mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	ps.Check(mt == beeld.MediaDICOMJSON || mt == "application/json", "Content-Type %q, want %s", resp.Header.Get("Content-Type"), beeld.MediaDICOMJSON)
	var sets []beeld.Dataset
	if err := json.Unmarshal(resp.Body, &sets); err != nil {
		ps.Add("the answer is not DICOM JSON (an array of datasets): %v", err)
		return nil
	}
	var out []string
	for i, d := range sets {
		for _, k := range keys {
			ps.Check(d.String(k) != "", "dataset %d has no (%s,%s)", i, k[:4], k[4:])
		}
		if id := d.String(beeld.TagPatientID); id != "" {
			ps.Check(id == bsn, "dataset %d is of patient %s, not %s", i, id, bsn)
		}
		if v := d.String(keys[0]); v != "" {
			out = append(out, v)
		}
	}
	return out
}

// judgeInstance checks a WADO-RS answer of one instance: multipart/related
// of application/dicom with one part, a DICOM file of that instance,
// series and study, of the patient.
func judgeInstance(ps *validation.Problems, resp *validation.Response, bsn, study, series, instance string) {
	if resp.Status != 200 {
		ps.Add("HTTP %d, want 200", resp.Status)
		return
	}
	ct := resp.Header.Get("Content-Type")
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil || mt != "multipart/related" || params["boundary"] == "" {
		ps.Add("Content-Type %q, want %s with a boundary", ct, beeld.MediaStudy)
		return
	}
	ps.Check(params["type"] == beeld.MediaDICOM, "multipart type %q, want %s", params["type"], beeld.MediaDICOM)
	parts := 0
	err = beeld.ReadMultipart(ct, bytes.NewReader(resp.Body), func(part io.Reader) error {
		parts++
		b, err := readAll(part)
		if err != nil {
			return err
		}
		info, err := beeld.ParseInstance(b)
		if err != nil {
			ps.Add("part %d is not a DICOM Part 10 file: %v", parts, err)
			return nil
		}
		ps.Check(info.SOPInstanceUID == instance, "part %d is instance %s, want %s", parts, info.SOPInstanceUID, instance)
		ps.Check(info.StudyInstanceUID == study, "part %d is of study %s, want %s", parts, info.StudyInstanceUID, study)
		ps.Check(info.SeriesUID == series, "part %d is of series %s, want %s", parts, info.SeriesUID, series)
		ps.Check(info.PatientID == bsn, "part %d is of patient %s, want %s", parts, info.PatientID, bsn)
		return nil
	})
	if err != nil {
		ps.Add("the multipart answer cannot be read: %v", err)
	}
	ps.Check(parts == 1, "%d parts, want the one instance", parts)
}

// refusalsAudited reads the node's audit trail of the kit (through the
// driver) for the refused retrieval of another patient's study and the
// successful retrieval of the patient's.
func refusalsAudited(ctx context.Context, p *validation.Probe) validation.Verdict {
	f, _ := lookup(p)
	if f == nil || f.study == "" {
		return validation.Error("no retrieval of a study was tried")
	}
	b, err := p.Env().Driver.AuditEvents(ctx, p.Env().Config.Kit.URA)
	if errors.Is(err, validation.ErrNotDriven) {
		return validation.Skip("%v", err)
	}
	if err != nil {
		return validation.Fail("the audit trail could not be read: %v", err)
	}
	p.Record(validation.Exchange{Direction: validation.KitToNode, Method: "GET", URL: "(driver) AuditEvent?agent=" + p.Env().Config.Kit.URA, Status: 200,
		ResponseBody: fmt.Sprintf("[%d bytes of the node's AuditEvent Bundle]", len(b))})
	refused, ok, err := studyEvents(b, f.study, p.Env().Started())
	if err != nil {
		return validation.Fail("%v", err)
	}
	var ps validation.Problems
	ps.Check(refused > 0, "no refused AuditEvent of the kit names study %s", f.study)
	ps.Check(ok > 0, "no successful AuditEvent of the kit names study %s", f.study)
	return ps.Verdict(fmt.Sprintf("study %s: %d refused and %d successful accesses of the kit audited", f.study, refused, ok))
}

// studyEvents counts the AuditEvents of a Bundle recorded since since that
// name study (an entity's reference, or its query), refused and successful.
func studyEvents(bundle []byte, study string, since time.Time) (refused, ok int, err error) {
	var b struct {
		ResourceType string `json:"resourceType"`
		Entry        []struct {
			Resource struct {
				Outcome  string    `json:"outcome"`
				Recorded time.Time `json:"recorded"`
				Entity   []struct {
					What struct {
						Reference string `json:"reference"`
					} `json:"what"`
					Reference struct {
						Reference string `json:"reference"`
					} `json:"reference"`
					Query string `json:"query"`
				} `json:"entity"`
			} `json:"resource"`
		} `json:"entry"`
	}
	if err := json.Unmarshal(bundle, &b); err != nil || b.ResourceType != "Bundle" {
		return 0, 0, fmt.Errorf("the audit trail is not a FHIR Bundle (%v)", err)
	}
	for _, e := range b.Entry {
		if e.Resource.Recorded.Before(since) {
			continue
		}
		names := false
		for _, en := range e.Resource.Entity {
			q, _ := base64.StdEncoding.DecodeString(en.Query)
			if strings.Contains(en.What.Reference, study) || strings.Contains(en.Reference.Reference, study) || strings.Contains(string(q), study) {
				names = true
			}
		}
		switch {
		case !names:
		case e.Resource.Outcome == "0":
			ok++
		default:
			refused++
		}
	}
	return refused, ok, nil
}
