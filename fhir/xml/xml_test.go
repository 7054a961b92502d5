package xml_test

import (
	"bytes"
	"encoding/json"
	stdxml "encoding/xml"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/schakel-nl/schakel/fhir"
	"github.com/schakel-nl/schakel/fhir/validate"
	fhirxml "github.com/schakel-nl/schakel/fhir/xml"
)

func fixtures(t testing.TB) map[string][]byte {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", "*.xml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no fixtures: %v", err)
	}
	out := make(map[string][]byte, len(files))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		out[filepath.Base(f)] = b
	}
	return out
}

// nictizDate is the date placeholder of the Nictiz fixtures, which their
// test tooling replaces by a date relative to today: ${DATE, T, D, -45}.
var nictizDate = regexp.MustCompile(`\$\{DATE, T, D, ([+-]?[0-9]+)\}`)

// resolveDates replaces the placeholders by dates relative to 2025-01-01.
func resolveDates(b []byte) []byte {
	return nictizDate.ReplaceAllFunc(b, func(m []byte) []byte {
		n, _ := strconv.Atoi(string(nictizDate.FindSubmatch(m)[1]))
		return []byte(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC).AddDate(0, 0, n).Format("2006-01-02"))
	})
}

// TestRoundTripFixtures converts the Nictiz BgZ resources XML → JSON → XML
// → JSON: the XML keeps every element, attribute and narrative (compared as
// canonical trees), the JSON is stable, and it is structurally valid STU3.
func TestRoundTripFixtures(t *testing.T) {
	for name, data := range fixtures(t) {
		t.Run(name, func(t *testing.T) {
			if raw, err := fhirxml.Decode(fhir.STU3, data); err != nil {
				t.Fatalf("Decode: %v", err)
			} else if nictizDate.Match(data) && len(validate.Resource(fhir.STU3, raw)) == 0 {
				t.Errorf("the date placeholders passed validation")
			}
			data = resolveDates(data)
			js, err := fhirxml.Decode(fhir.STU3, data)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if !json.Valid(js) {
				t.Fatalf("Decode made invalid JSON: %s", js)
			}
			if issues := validate.Resource(fhir.STU3, js); len(issues) > 0 {
				t.Errorf("decoded resource is not valid: %+v", issues)
			}
			x, err := fhirxml.Encode(fhir.STU3, js)
			if err != nil {
				t.Fatalf("Encode: %v", err)
			}
			if diff := cmp.Diff(canonical(t, data), canonical(t, x)); diff != "" {
				t.Errorf("XML changed in the round trip (-original +encoded):\n%s", diff)
			}
			js2, err := fhirxml.Decode(fhir.STU3, x)
			if err != nil {
				t.Fatalf("Decode of the encoded XML: %v", err)
			}
			if !bytes.Equal(js, js2) {
				t.Errorf("JSON changed in the round trip:\n%s\n%s", js, js2)
			}
		})
	}
}

// canonical renders an XML document as an indented tree: comments dropped,
// white space between FHIR elements dropped (it is not content), attributes
// sorted, namespaces spelled out.
func canonical(t *testing.T, data []byte) string {
	t.Helper()
	d := stdxml.NewDecoder(bytes.NewReader(data))
	var b strings.Builder
	depth, xhtml := 0, 0
	for {
		tok, err := d.Token()
		if err != nil {
			break
		}
		switch tt := tok.(type) {
		case stdxml.StartElement:
			if tt.Name.Space == fhirxml.XHTMLNamespace {
				xhtml++
			}
			var attrs []string
			for _, a := range tt.Attr {
				if a.Name.Space == "xmlns" || a.Name.Local == "xmlns" {
					continue
				}
				attrs = append(attrs, a.Name.Space+":"+a.Name.Local+"="+a.Value)
			}
			slices.Sort(attrs)
			b.WriteString(strings.Repeat(" ", depth) + "<{" + tt.Name.Space + "}" + tt.Name.Local + " " + strings.Join(attrs, " ") + ">\n")
			depth++
		case stdxml.EndElement:
			depth--
			if tt.Name.Space == fhirxml.XHTMLNamespace {
				xhtml--
			}
			b.WriteString(strings.Repeat(" ", depth) + "</>\n")
		case stdxml.CharData:
			if xhtml == 0 && len(bytes.TrimSpace(tt)) == 0 {
				continue
			}
			b.WriteString(strings.Repeat(" ", depth) + "text " + string(tt) + "\n")
		}
	}
	return b.String()
}

func TestDecode(t *testing.T) {
	const ns = `xmlns="http://hl7.org/fhir"`
	cases := []struct {
		name    string
		version fhir.Version
		xml     string
		want    string // compact JSON
		wantErr string // substring of the error
	}{
		{
			name: "primitives, arrays from the definitions, decimals exact",
			xml: `<?xml version="1.0" encoding="UTF-8"?>
<!-- a comment -->
<Observation ` + ns + `><id value="o1"/><status value="final"/><code><text value="x"/></code>
<valueQuantity><value value="1.50"/><unit value="mmol/L"/></valueQuantity>
<referenceRange><low><value value="0.100000000000000000001"/></low></referenceRange></Observation>`,
			want: `{"resourceType":"Observation","id":"o1","status":"final","code":{"text":"x"},"valueQuantity":{"value":1.50,"unit":"mmol/L"},"referenceRange":[{"low":{"value":0.100000000000000000001}}]}`,
		},
		{
			name: "primitive extensions and ids, aligned arrays",
			xml: `<Patient ` + ns + `><name><given value="A"/><given id="g2"><extension url="http://e"><valueCode value="IN"/></extension></given><given value="C"/></name>
<birthDate value="1970-01-01"><extension url="http://t"><valueDateTime value="1970-01-01T10:00:00+01:00"/></extension></birthDate><active value="true"/></Patient>`,
			want: `{"resourceType":"Patient","active":true,"name":[{"given":["A",null,"C"],"_given":[null,{"id":"g2","extension":[{"url":"http://e","valueCode":"IN"}]},null]}],"birthDate":"1970-01-01","_birthDate":{"extension":[{"url":"http://t","valueDateTime":"1970-01-01T10:00:00+01:00"}]}}`,
		},
		{
			name: "element id attribute and narrative",
			xml:  `<Patient ` + ns + `><text><status value="generated"/><div xmlns="http://www.w3.org/1999/xhtml"><p class="a">Jan &amp; <b>Piet</b><br/></p></div></text><identifier id="i1"><value value="1"/></identifier></Patient>`,
			want: `{"resourceType":"Patient","text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\"><p class=\"a\">Jan &amp; <b>Piet</b><br/></p></div>"},"identifier":[{"id":"i1","value":"1"}]}`,
		},
		{
			name: "contained resources",
			xml:  `<MedicationRequest ` + ns + `><contained><Medication><id value="m"/><code><text value="x"/></code></Medication></contained><status value="active"/><intent value="order"/><medicationReference><reference value="#m"/></medicationReference><subject><reference value="Patient/p"/></subject></MedicationRequest>`,
			want: `{"resourceType":"MedicationRequest","contained":[{"resourceType":"Medication","id":"m","code":{"text":"x"}}],"status":"active","intent":"order","medicationReference":{"reference":"#m"},"subject":{"reference":"Patient/p"}}`,
		},
		{
			name: "Bundle entry resources",
			xml:  `<Bundle ` + ns + `><type value="transaction"/><entry><fullUrl value="urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a"/><resource><Patient><active value="false"/></Patient></resource><request><method value="POST"/><url value="Patient"/></request></entry></Bundle>`,
			want: `{"resourceType":"Bundle","type":"transaction","entry":[{"fullUrl":"urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a","resource":{"resourceType":"Patient","active":false},"request":{"method":"POST","url":"Patient"}}]}`,
		},
		{
			name: "Parameters with a resource (R4)", version: fhir.R4,
			xml:  `<Parameters ` + ns + `><parameter><name value="p"/><resource><Patient><id value="x"/></Patient></resource></parameter><parameter><name value="n"/><valueInteger value="-3"/></parameter></Parameters>`,
			want: `{"resourceType":"Parameters","parameter":[{"name":"p","resource":{"resourceType":"Patient","id":"x"}},{"name":"n","valueInteger":-3}]}`,
		},
		{
			name: "nested backbone by content reference",
			xml:  `<Questionnaire ` + ns + `><status value="draft"/><item><linkId value="1"/><type value="group"/><item><linkId value="1.1"/><type value="string"/></item></item></Questionnaire>`,
			want: `{"resourceType":"Questionnaire","status":"draft","item":[{"linkId":"1","type":"group","item":[{"linkId":"1.1","type":"string"}]}]}`,
		},
		{
			name: "special characters in values",
			xml:  `<Patient ` + ns + `><name><text value="a&quot;b&#xA;c\d&lt;"/></name></Patient>`,
			want: `{"resourceType":"Patient","name":[{"text":"a\"b\nc\\d<"}]}`,
		},
		{name: "DOCTYPE", xml: `<!DOCTYPE Patient [<!ENTITY x "y">]><Patient ` + ns + `/>`, wantErr: "DOCTYPE"},
		{name: "external entity (XXE)", xml: `<?xml version="1.0"?><!DOCTYPE r [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><Patient ` + ns + `><name><text value="&xxe;"/></name></Patient>`, wantErr: "DOCTYPE"},
		{name: "billion laughs", xml: `<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">]><Patient ` + ns + `><name><text value="&lol2;"/></name></Patient>`, wantErr: "DOCTYPE"},
		{name: "undefined entity", xml: `<Patient ` + ns + `><name><text value="&nbsp;"/></name></Patient>`, wantErr: "malformed XML"},
		{name: "processing instruction", xml: `<?xml-stylesheet href="x"?><Patient ` + ns + `/>`, wantErr: "processing instruction"},
		{name: "processing instruction inside", xml: `<Patient ` + ns + `><?php x?></Patient>`, wantErr: "processing instruction"},
		{name: "another encoding", xml: `<?xml version="1.0" encoding="ISO-8859-1"?><Patient ` + ns + `/>`, wantErr: "unsupported XML"},
		{name: "invalid UTF-8", xml: "<Patient " + ns + "><name><text value=\"\xff\"/></name></Patient>", wantErr: "UTF-8"},
		{name: "too deep", xml: deepXML(101), wantErr: "deeper than 100"},
		{name: "malformed", xml: `<Patient ` + ns + `><name></Patient>`, wantErr: "malformed XML"},
		{name: "no namespace", xml: `<Patient/>`, wantErr: "FHIR namespace"},
		{name: "unknown resource type", xml: `<Patient2 ` + ns + `/>`, wantErr: `"Patient2" is not a resource type`},
		{name: "R4 type in STU3", xml: `<ServiceRequest ` + ns + `/>`, wantErr: "not a resource type of FHIR stu3"},
		{name: "unknown element", xml: `<Patient ` + ns + `><foo value="x"/></Patient>`, wantErr: "Patient.foo: is not an element of Patient"},
		{name: "single element twice", xml: `<Patient ` + ns + `><gender value="male"/><gender value="female"/></Patient>`, wantErr: "Patient.gender: occurs more than once"},
		{name: "two choice types", xml: `<Observation ` + ns + `><valueString value="a"/><valueBoolean value="true"/></Observation>`, wantErr: "takes one type"},
		{name: "bad boolean", xml: `<Patient ` + ns + `><active value="yes"/></Patient>`, wantErr: "Patient.active: value \"yes\" must be true or false"},
		{name: "bad decimal", xml: `<Observation ` + ns + `><valueQuantity><value value="1,5"/></valueQuantity></Observation>`, wantErr: "not a decimal"},
		{name: "text content", xml: `<Patient ` + ns + `>hello</Patient>`, wantErr: "text is not allowed"},
		{name: "unexpected attribute", xml: `<Patient ` + ns + `><name foo="x"><text value="a"/></name></Patient>`, wantErr: `unexpected attribute "foo"`},
		{name: "id as an element inside a datatype", xml: `<Patient ` + ns + `><name><id value="x"/></name></Patient>`, wantErr: "not an element of HumanName"},
		{name: "empty primitive", xml: `<Patient ` + ns + `><gender/></Patient>`, wantErr: "no value attribute"},
		{name: "narrative with a script in another namespace", xml: `<Patient ` + ns + `><text><status value="generated"/><div xmlns="http://www.w3.org/1999/xhtml"><x:s xmlns:x="urn:x"/></div></text></Patient>`, wantErr: "only hold XHTML"},
		{name: "narrative not a div", xml: `<Patient ` + ns + `><text><status value="generated"/><p xmlns="http://www.w3.org/1999/xhtml"/></text></Patient>`, wantErr: "not an element"},
		{name: "two resources in contained", xml: `<Patient ` + ns + `><contained><Patient/><Patient/></contained></Patient>`, wantErr: "more than one resource"},
		{name: "text after the root", xml: `<Patient ` + ns + `/>x`, wantErr: "after the root"},
		{name: "empty document", xml: ``, wantErr: "no root element"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v := tc.version
			if v == "" {
				v = fhir.STU3
			}
			got, err := fhirxml.Decode(v, []byte(tc.xml))
			if tc.wantErr != "" {
				var xe *fhirxml.Error
				if err == nil || !errors.As(err, &xe) || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want an *Error containing %q (got %s)", err, tc.wantErr, got)
				}
				return
			}
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if string(got) != tc.want {
				t.Fatalf("got  %s\nwant %s", got, tc.want)
			}
			// And back: the XML decodes to the same JSON.
			x, err := fhirxml.Encode(v, got)
			if err != nil {
				t.Fatalf("Encode: %v", err)
			}
			again, err := fhirxml.Decode(v, x)
			if err != nil || !bytes.Equal(again, got) {
				t.Fatalf("round trip: %v\n%s\n%s", err, x, again)
			}
		})
	}
}

func deepXML(n int) string {
	// Questionnaire.item nests without end through its content reference.
	var b strings.Builder
	b.WriteString(`<Questionnaire xmlns="http://hl7.org/fhir">`)
	for range n - 1 {
		b.WriteString("<item>")
	}
	for range n - 1 {
		b.WriteString("</item>")
	}
	b.WriteString("</Questionnaire>")
	return b.String()
}

func TestEncode(t *testing.T) {
	cases := []struct {
		name    string
		json    string
		want    string
		wantErr string
	}{
		{
			name: "element order from the definitions, not from the JSON",
			json: `{"gender":"male","name":[{"given":["A","B"],"family":"F"}],"id":"p","resourceType":"Patient","active":true}`,
			want: `<?xml version="1.0" encoding="UTF-8"?><Patient xmlns="http://hl7.org/fhir"><id value="p"/><active value="true"/><name><family value="F"/><given value="A"/><given value="B"/></name><gender value="male"/></Patient>`,
		},
		{
			name: "extension url and element id as attributes, decimals exact",
			json: `{"resourceType":"Observation","status":"final","code":{"text":"t"},"extension":[{"url":"http://x","valueDecimal":3.140}],"valueQuantity":{"id":"q","value":1e3}}`,
			want: `<?xml version="1.0" encoding="UTF-8"?><Observation xmlns="http://hl7.org/fhir"><extension url="http://x"><valueDecimal value="3.140"/></extension><status value="final"/><code><text value="t"/></code><valueQuantity id="q"><value value="1e3"/></valueQuantity></Observation>`,
		},
		{
			name: "newlines kept in attributes",
			json: `{"resourceType":"Patient","name":[{"text":"a\nb\t\"c\" & <d>"}]}`,
			want: `<?xml version="1.0" encoding="UTF-8"?><Patient xmlns="http://hl7.org/fhir"><name><text value="a&#xA;b&#x9;&quot;c&quot; &amp; &lt;d&gt;"/></name></Patient>`,
		},
		{name: "unknown member", json: `{"resourceType":"Patient","foo":1}`, wantErr: "Patient.foo: is not an element of Patient"},
		{name: "extensions on a complex element", json: `{"resourceType":"Patient","_name":[{}]}`, wantErr: "is not an element"},
		{name: "array for a single element", json: `{"resourceType":"Patient","gender":["male"]}`, wantErr: "must not be an array"},
		{name: "object for a repeating element", json: `{"resourceType":"Patient","name":{"family":"x"}}`, wantErr: "must be an array"},
		{name: "number for a string", json: `{"resourceType":"Patient","gender":1}`, wantErr: "must be a JSON string"},
		{name: "string for a boolean", json: `{"resourceType":"Patient","active":"true"}`, wantErr: "must be a JSON boolean"},
		{name: "control character", json: `{"resourceType":"Patient","name":[{"text":"a\u0001"}]}`, wantErr: "cannot carry"},
		{name: "narrative not XHTML", json: `{"resourceType":"Patient","text":{"status":"generated","div":"<div>x</div>"}}`, wantErr: "must be a <div xmlns"},
		{name: "narrative with a DOCTYPE", json: `{"resourceType":"Patient","text":{"status":"generated","div":"<!DOCTYPE x [<!ENTITY a \"b\">]><div xmlns=\"http://www.w3.org/1999/xhtml\">&a;</div>"}}`, wantErr: "declarations"},
		{name: "narrative followed by more", json: `{"resourceType":"Patient","text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\"/><p/>"}}`, wantErr: "one XHTML"},
		{name: "no resourceType", json: `{"id":"x"}`, wantErr: "no resourceType"},
		{name: "unknown resourceType", json: `{"resourceType":"Foo"}`, wantErr: "not a resource type"},
		{name: "not an object", json: `[1]`, wantErr: "not a JSON object"},
		{name: "malformed", json: `{"resourceType":`, wantErr: "not valid JSON"},
		{name: "too deep", json: `{"resourceType":"Patient","x":` + strings.Repeat("[", 101) + strings.Repeat("]", 101) + `}`, wantErr: "deeper than 100"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := fhirxml.Encode(fhir.STU3, json.RawMessage(tc.json))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one containing %q (got %s)", err, tc.wantErr, got)
				}
				return
			}
			if err != nil {
				t.Fatalf("Encode: %v", err)
			}
			if string(got) != tc.want {
				t.Fatalf("got  %s\nwant %s", got, tc.want)
			}
		})
	}
}

func TestSizeLimit(t *testing.T) {
	big := make([]byte, fhirxml.MaxSize+1)
	if _, err := fhirxml.Decode(fhir.STU3, big); err == nil || !strings.Contains(err.Error(), "exceeds") {
		t.Fatalf("Decode of %d bytes: %v", len(big), err)
	}
	if _, err := fhirxml.Encode(fhir.STU3, big); err == nil || !strings.Contains(err.Error(), "exceeds") {
		t.Fatalf("Encode of %d bytes: %v", len(big), err)
	}
}

func BenchmarkDecode(b *testing.B) {
	data := fixtures(b)["bgz-msz-patA.xml"]
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := fhirxml.Decode(fhir.STU3, data); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncode(b *testing.B) {
	js, err := fhirxml.Decode(fhir.STU3, fixtures(b)["bgz-msz-patA.xml"])
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(js)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := fhirxml.Encode(fhir.STU3, js); err != nil {
			b.Fatal(err)
		}
	}
}
