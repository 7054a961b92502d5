// Package beeld is the Beeldbeschikbaarheid (image availability) care
// application: a FHIR R4 ImagingStudy view of a patient's studies held in a
// participant's PACS, and the images themselves over DICOMweb (QIDO-RS and
// WADO-RS, DICOM PS3.18) proxied through the node.
//
// The package has three parts:
//   - a PACS stand-in (Archive, PACS): small valid DICOM Part 10 files
//     generated per patient, served with the standard DICOMweb shapes;
//   - the holder side (Holder): answers ImagingStudy searches by querying the
//     participant's PACS with QIDO-RS, and proxies QIDO-RS and WADO-RS on a
//     public route after checking the access token, the partner's plateau,
//     the patient's consent and that the study is the token's patient's;
//     every retrieval is audited (NEN 7513);
//   - the requester side (Requester): finds a holder's ImagingStudy endpoint
//     in the addressbook, gets a token for one patient and retrieves a study
//     through the holder's node, verifying the DICOM it receives.
package beeld

import (
	"errors"
)

// Application is the care application's name: the access token's scope and
// the policy file's name.
const Application = "beeld"

// Identifiers and code systems of the wire shapes.
const (
	// SystemBSN is the FHIR naming system of the BSN.
	SystemBSN = "http://fhir.nl/fhir/NamingSystem/bsn"
	// OIDBSN is the BSN's OID: DICOM's IssuerOfPatientID (0010,0021) for a
	// PatientID that is a BSN.
	OIDBSN = "2.16.840.1.113883.2.4.6.3"
	// SystemDICOMUID is the identifier system of a DICOM UID in FHIR.
	SystemDICOMUID = "urn:dicom:uid"
	// SystemDCM is DICOM's code system (modalities, among others).
	SystemDCM = "http://dicom.nema.org/resources/ontology/DCM"
	// SystemConnectionType is HL7's endpoint connection type code system.
	SystemConnectionType = "http://terminology.hl7.org/CodeSystem/endpoint-connection-type"
	// ConnectionWADORS is the connection type of a DICOMweb WADO-RS endpoint.
	ConnectionWADORS = "dicom-wado-rs"
	// MediaDICOM is a DICOM Part 10 file.
	MediaDICOM = "application/dicom"
	// MediaDICOMJSON is the DICOM JSON model (PS3.18 F.2).
	MediaDICOMJSON = "application/dicom+json"
	// MediaStudy is a WADO-RS answer of DICOM instances.
	MediaStudy = `multipart/related; type="application/dicom"`
)

// Addressbook payload types of a participant's imaging endpoints.
const (
	// PayloadImagingStudy is the FHIR R4 endpoint answering ImagingStudy
	// searches (a FHIR base).
	PayloadImagingStudy = "beeld-imagingstudy"
	// PayloadDICOMweb is the DICOMweb (WADO-RS, QIDO-RS) base.
	PayloadDICOMweb = "beeld-dicomweb"
)

// Claims of the access token and of the grant assertion that asks for it.
const (
	// AssertionPatient is the grant-assertion claim naming the patient
	// (BSN) whose images the requester asks for: an imaging token opens one
	// patient's studies only.
	AssertionPatient = "patient_bsn"
	// ClaimPatient is the access-token claim with that patient's BSN.
	ClaimPatient = "twiin_patient"
)

// Errors of the exchange; the edges translate them once.
var (
	ErrNotFound  = errors.New("no such study, series or instance")
	ErrBadQuery  = errors.New("malformed DICOMweb request")
	ErrForbidden = errors.New("not allowed")
	ErrUpstream  = errors.New("the PACS could not be queried")
	ErrNoPACS    = errors.New("the participant has no PACS configured")
)

// CareContextSystem and CareContextCode name imaging at the referral index:
// LOINC 18748-4 "Diagnostic imaging study".
const (
	CareContextSystem = "http://loinc.org"
	CareContextCode   = "18748-4"
)
