package addressbook

import (
	"encoding/json"
	"testing"
)

// TestEndpointConnectionType: an endpoint says how it is reached — FHIR
// REST by default, DICOMweb for a participant's images.
func TestEndpointConnectionType(t *testing.T) {
	e := Entry{ID: "org-90000002", URA: "90000002", Name: "Ziekenhuis", Endpoints: []EndpointSpec{
		{ID: "ep-fhir", PayloadType: PayloadBgZServer, Address: "https://node/fhir/stu3/90000002", FHIRVersion: "3.0"},
		{ID: "ep-dicomweb", PayloadType: "beeld-dicomweb", Address: "https://node/dicomweb/90000002", ConnectionType: ConnectionTypeDICOMWADORS},
	}}
	res := e.Resources()
	if len(res) != 3 {
		t.Fatalf("%d resources, want 3", len(res))
	}
	for i, want := range []struct{ connection, mime string }{{ConnectionTypeHL7FHIR, "application/fhir+json; fhirVersion=3.0"}, {ConnectionTypeDICOMWADORS, "application/dicom"}} {
		var ep struct {
			ConnectionType  struct{ System, Code string }
			PayloadMimeType []string
		}
		if err := json.Unmarshal(res[i+1], &ep); err != nil {
			t.Fatal(err)
		}
		if ep.ConnectionType.System != SystemConnectionType || ep.ConnectionType.Code != want.connection || len(ep.PayloadMimeType) != 1 || ep.PayloadMimeType[0] != want.mime {
			t.Errorf("endpoint %d: %+v", i, ep)
		}
	}
}
