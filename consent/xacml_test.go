package consent

import (
	"errors"
	"strings"
	"testing"
	"time"
)

const testMessageID = "urn:uuid:2b1f4c1e-8f7a-4d2b-9a51-3a2f0e6f1c11"

func validQuery(t *testing.T) (Question, string) {
	q, err := question(bsn(t, 10)).Normalize()
	if err != nil {
		t.Fatal(err)
	}
	return q, string(buildQuery(q, testMessageID, "https://consent.example/geslotenautorisatievraag/xacml3"))
}

func TestQueryRoundTrip(t *testing.T) {
	q, body := validQuery(t)
	id, got, err := parseQuery([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	if id != testMessageID || got != q {
		t.Fatalf("parsed %q %+v, want %q %+v", id, got, testMessageID, q)
	}
	// The wire shape of SPEC §9.
	for _, want := range []string{
		`xmlns:soap="http://www.w3.org/2003/05/soap-envelope"`,
		`<wsa:Action>XACMLAuthorizationDecisionQueryRequest</wsa:Action>`,
		`<wsa:ReplyTo><wsa:Address>http://www.w3.org/2005/08/addressing/anonymous</wsa:Address></wsa:ReplyTo>`,
		`<wsa:To>https://consent.example/geslotenautorisatievraag/xacml3</wsa:To>`,
		`xmlns:xacml-samlp="urn:oasis:names:tc:xacml:3.0:profile:saml2.0:v2:schema:protocol:wd-14"`,
		`<Request xmlns="urn:oasis:names:tc:xacml:3.0:core:schema:wd-17" CombinedDecision="false" ReturnPolicyIdList="false">`,
		`<InstanceIdentifier xmlns="urn:hl7-org:v3" root="2.16.840.1.113883.2.4.6.3" extension="` + q.PatientBSN + `"/>`,
		`<CodedValue xmlns="urn:hl7-org:v3" code="GGC002" codeSystem="2.16.840.1.113883.2.4.3.111.5.10.1"/>`,
		`<CodedValue xmlns="urn:hl7-org:v3" code="TREAT" codeSystem="2.16.840.1.113883.1.11.20448"/>`,
		`AttributeId="urn:nl:otv:names:tc:1.0:subject:consulting-healthcare-facility-type-code"`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("query lacks %s", want)
		}
	}
}

func TestParseQueryRefusals(t *testing.T) {
	q, good := validQuery(t)
	replace := func(old, new string) string {
		if !strings.Contains(good, old) {
			t.Fatalf("fixture lacks %q", old)
		}
		return strings.Replace(good, old, new, 1)
	}
	attr := func(id string) string { // the whole Attribute element with id
		i := strings.Index(good, `<Attribute AttributeId="`+id+`"`)
		j := strings.Index(good[i:], `</Attribute>`) + len(`</Attribute>`)
		return good[i : i+j]
	}
	bsnAttr := attr("urn:oasis:names:tc:xacml:2.0:resource:resource-id")
	tests := []struct {
		name   string
		body   string
		fault  bool   // SOAP Fault expected
		status string // else Indeterminate with this status
	}{
		{"not XML", "this is not xml", true, ""},
		{"truncated", good[:len(good)/2], true, ""},
		{"mismatched tags", replace("</soap:Header>", "</soap:Head>"), true, ""},
		{"DOCTYPE with external entity (XXE)", strings.Replace(good, "\n",
			"\n<!DOCTYPE foo [<!ENTITY xxe SYSTEM \"file:///etc/passwd\">]>\n", 1), true, ""},
		{"entity reference", replace(`extension="`+q.PatientBSN+`"`, `extension="&xxe;"`), true, ""},
		{"processing instruction", replace("<soap:Body>", "<?evil x?><soap:Body>"), true, ""},
		{"SOAP 1.1 envelope", strings.ReplaceAll(good, "http://www.w3.org/2003/05/soap-envelope", "http://schemas.xmlsoap.org/soap/envelope/"), true, ""},
		{"no MessageID", replace("<wsa:MessageID>"+testMessageID+"</wsa:MessageID>", ""), true, ""},
		{"MessageID not a uuid", replace(testMessageID, "urn:uuid:nope"), true, ""},
		{"wrong action", replace("<wsa:Action>"+ActionQuery, "<wsa:Action>Other"), true, ""},
		{"two queries", replace("</soap:Body>", `<xacml-samlp:XACMLAuthzDecisionQuery/></soap:Body>`), true, ""},
		{"extra body element", replace("</soap:Body>", `<x:Other xmlns:x="urn:x"/></soap:Body>`), true, ""},
		{"query without Request", replace(good[strings.Index(good, "<Request"):strings.Index(good, "</Request>")+len("</Request>")], ""), true, ""},
		{"missing BSN", replace(bsnAttr, ""), false, statusMissingAttribute},
		{"missing purpose", replace(attr("urn:oasis:names:tc:xspa:1.0:subject:purposeofuse"), ""), false, statusMissingAttribute},
		{"duplicate BSN", replace(bsnAttr, bsnAttr+bsnAttr), false, statusSyntaxError},
		{"BSN with wrong root", replace(`root="2.16.840.1.113883.2.4.6.3"`, `root="2.16.840.1.113883.2.4.6.4"`), false, statusSyntaxError},
		{"BSN failing the 11-proef", replace(`extension="`+q.PatientBSN+`"`, `extension="123456789"`), false, statusSyntaxError},
		{"BSN as CV", replace(bsnAttr, strings.Replace(bsnAttr, dataTypeII, dataTypeCV, 1)), false, statusSyntaxError},
		{"wrong event code", replace(`code="GGC002"`, `code="GGC003"`), false, statusProcessingError},
		{"wrong purpose", replace(`code="TREAT"`, `code="HRESCH"`), false, statusProcessingError},
		{"wrong facility code system", replace(`codeSystem="2.16.840.1.113883.2.4.15.1060"`, `codeSystem="1.2.3"`), false, statusSyntaxError},
		{"attribute in wrong category", replace(`Category="`+catEnvironment+`"`, `Category="`+catAction+`"`), false, statusSyntaxError},
		{"CombinedDecision", replace(`CombinedDecision="false"`, `CombinedDecision="true"`), false, statusSyntaxError},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, got, err := parseQuery([]byte(tt.body))
			if err == nil {
				t.Fatalf("accepted: %+v", got)
			}
			var sf *soapFault
			var ind *indeterminate
			switch {
			case tt.fault:
				if !errors.As(err, &sf) {
					t.Fatalf("err = %v, want a SOAP fault", err)
				}
			case !errors.As(err, &ind):
				t.Fatalf("err = %v, want indeterminate", err)
			case ind.status != tt.status:
				t.Fatalf("status = %s (%s), want %s", ind.status, ind.message, tt.status)
			}
		})
	}
}

func TestParseQueryIgnoresExtraAttributes(t *testing.T) {
	q, good := validQuery(t)
	// Mitz defines an optional subject:mandated attribute; it does not change the decision.
	body := strings.Replace(good, `<Attribute AttributeId="urn:oasis:names:tc:xacml:2.0:subject:role"`,
		`<Attribute AttributeId="urn:nl:otv:names:tc:1.0:subject:mandated" IncludeInResult="false"><AttributeValue DataType="urn:hl7-org:v3#II"><InstanceIdentifier xmlns="urn:hl7-org:v3" root="2.16.528.1.1007.3.1" extension="900000001"/></AttributeValue></Attribute>`+
			`<Attribute AttributeId="urn:oasis:names:tc:xacml:2.0:subject:role"`, 1)
	_, got, err := parseQuery([]byte(body))
	if err != nil || got != q {
		t.Fatalf("parseQuery = %+v, %v", got, err)
	}
}

func TestParseResponse(t *testing.T) {
	now := time.Now()
	tests := []struct {
		name string
		body string
		want Decision
		ok   bool
	}{
		{"permit", string(buildResponse(testMessageID, "x", DecisionPermit, statusOK, "", now)), DecisionPermit, true},
		{"deny", string(buildResponse(testMessageID, "x", DecisionDeny, statusOK, "", now)), DecisionDeny, true},
		{"not applicable", string(buildResponse("", "x", DecisionNotApplicable, statusOK, "", now)), DecisionNotApplicable, true},
		{"indeterminate", string(buildResponse("", "x", DecisionIndeterminate, statusMissingAttribute, "m", now)), DecisionIndeterminate, true},
		{"bare XACML Response in the Body", `<s:Envelope xmlns:s="` + nsSOAP + `"><s:Body><Response xmlns="` + nsXACML +
			`"><Result><Decision>Permit</Decision><Status><StatusCode Value="` + statusOK + `"/></Status></Result></Response></s:Body></s:Envelope>`,
			DecisionPermit, true},
		{"permit with an error status", string(buildResponse("", "x", DecisionPermit, statusProcessingError, "", now)), "", false},
		{"fault", string(buildFault(testMessageID, senderFault("", "bad"))), "", false},
		{"SAML status not Success", strings.Replace(string(buildResponse("", "x", DecisionPermit, statusOK, "", now)),
			samlSuccess, "urn:oasis:names:tc:SAML:2.0:status:Requester", 1), "", false},
		{"two results", strings.Replace(string(buildResponse("", "x", DecisionPermit, statusOK, "", now)), "</Result>",
			"</Result><Result><Decision>Deny</Decision></Result>", 1), "", false},
		{"unknown decision", strings.Replace(string(buildResponse("", "x", DecisionPermit, statusOK, "", now)),
			">Permit<", ">Allow<", 1), "", false},
		{"no decision", `<s:Envelope xmlns:s="` + nsSOAP + `"><s:Body/></s:Envelope>`, "", false},
		{"not SOAP", `<Response xmlns="` + nsXACML + `"><Result><Decision>Permit</Decision></Result></Response>`, "", false},
		{"DOCTYPE", `<!DOCTYPE x [<!ENTITY a "Permit">]>` + `<s:Envelope xmlns:s="` + nsSOAP + `"><s:Body><Response xmlns="` + nsXACML +
			`"><Result><Decision>&a;</Decision></Result></Response></s:Body></s:Envelope>`, "", false},
		{"garbage", "<html>502 Bad Gateway</html", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := parseResponse([]byte(tt.body))
			if (err == nil) != tt.ok {
				t.Fatalf("parseResponse = %+v, %v; want ok=%v", a, err, tt.ok)
			}
			if tt.ok && a.decision != tt.want {
				t.Fatalf("decision = %s, want %s", a.decision, tt.want)
			}
		})
	}
}
