package rest

import (
	"encoding/json"
	"net/http"
	"slices"
	"time"

	"github.com/schakel-nl/schakel/fhir"
	"github.com/schakel-nl/schakel/fhir/spec"
	"github.com/schakel-nl/schakel/fhir/store"
)

// capabilities answers GET metadata with a CapabilityStatement that says
// what this server does, generated from the spec tables of its version:
// every resource type with the interactions this server and its store
// support, every search parameter the search engine compiles, JSON and
// XML, and the operations ($lastn, $everything, $document, $validate).
func (s *Server) capabilities(w http.ResponseWriter, req *Request) Result {
	doc, err := json.Marshal(s.capabilityStatement(req.Base))
	if err != nil {
		return Result{Err: err}
	}
	return s.write(w, req, http.StatusOK, doc, nil)
}

type (
	capabilityStatement struct {
		ResourceType   string         `json:"resourceType"`
		Status         string         `json:"status"`
		Date           string         `json:"date"`
		Publisher      string         `json:"publisher"`
		Kind           string         `json:"kind"`
		Software       software       `json:"software"`
		Implementation implementation `json:"implementation"`
		FHIRVersion    string         `json:"fhirVersion"`
		AcceptUnknown  string         `json:"acceptUnknown,omitempty"` // STU3 only, where it is required
		Format         []string       `json:"format"`
		PatchFormat    []string       `json:"patchFormat,omitempty"`
		Rest           []capRest      `json:"rest"`
	}
	software struct {
		Name string `json:"name"`
	}
	implementation struct {
		Description string `json:"description"`
		URL         string `json:"url"`
	}
	capRest struct {
		Mode        string           `json:"mode"`
		Resource    []capResource    `json:"resource"`
		Interaction []capInteraction `json:"interaction,omitempty"`
		Operation   []capOp          `json:"operation,omitempty"` // STU3: operations live here
	}
	capResource struct {
		Type              string           `json:"type"`
		Interaction       []capInteraction `json:"interaction"`
		Versioning        string           `json:"versioning"`
		ReadHistory       bool             `json:"readHistory"`
		UpdateCreate      bool             `json:"updateCreate"`
		ConditionalCreate bool             `json:"conditionalCreate"`
		ConditionalUpdate bool             `json:"conditionalUpdate"`
		ConditionalDelete string           `json:"conditionalDelete"`
		SearchInclude     []string         `json:"searchInclude,omitempty"`
		SearchParam       []capSearchParam `json:"searchParam,omitempty"`
		Operation         []capOp          `json:"operation,omitempty"` // R4: operations live here
	}
	capSearchParam struct {
		Name string `json:"name"`
		Type string `json:"type"`
	}
	capInteraction struct {
		Code string `json:"code"`
	}
	capOp struct {
		Name       string `json:"name"`
		Definition any    `json:"definition"` // STU3: Reference; R4: canonical
	}
)

// typeInteractions are the interactions served on every resource type;
// history needs a store.Historian.
var (
	typeInteractions        = []capInteraction{{"read"}, {"vread"}, {"update"}, {"delete"}, {"create"}, {"search-type"}}
	typeHistoryInteractions = []capInteraction{{"read"}, {"vread"}, {"update"}, {"delete"}, {"history-instance"}, {"history-type"}, {"create"}, {"search-type"}}
)

// The definitions of the operations served, by resource type ("" for
// every type).
var operationDefinitions = []struct{ typ, name, definition string }{
	{"Observation", "lastn", "http://hl7.org/fhir/OperationDefinition/Observation-lastn"},
	{"Patient", "everything", "http://hl7.org/fhir/OperationDefinition/Patient-everything"},
	{"Composition", "document", "http://hl7.org/fhir/OperationDefinition/Composition-document"},
	{"", "validate", "http://hl7.org/fhir/OperationDefinition/Resource-validate"},
}

func (s *Server) capabilityStatement(base string) capabilityStatement {
	cs := capabilityStatement{
		ResourceType:   "CapabilityStatement",
		Status:         "active",
		Date:           s.started.Format(time.RFC3339),
		Publisher:      "Schakel",
		Kind:           "instance",
		Software:       software{Name: "Schakel"},
		Implementation: implementation{Description: "Schakel FHIR endpoint", URL: base},
		FHIRVersion:    "3.0.2",
		AcceptUnknown:  "no",
		Format:         []string{"json", "xml"},
	}
	if s.version == fhir.R4 {
		cs.FHIRVersion, cs.AcceptUnknown = "4.0.1", ""
	}
	_, history := s.store.(store.Historian)
	_, transactions := s.store.(store.Transactional)
	rest := capRest{Mode: "server"}
	if transactions {
		rest.Interaction = append(rest.Interaction, capInteraction{"transaction"})
	}
	rest.Interaction = append(rest.Interaction, capInteraction{"batch"})
	if history {
		rest.Interaction = append(rest.Interaction, capInteraction{"history-system"})
	}
	interactions := typeInteractions
	if history {
		interactions = typeHistoryInteractions
	}
	defs := spec.For(s.version)
	types := make([]string, 0, len(s.types))
	for t := range s.types {
		types = append(types, t)
	}
	slices.Sort(types)
	for _, t := range types {
		r := capResource{Type: t, Interaction: interactions, Versioning: "versioned", ReadHistory: history, UpdateCreate: true,
			ConditionalCreate: true, ConditionalUpdate: true, ConditionalDelete: "single"}
		r.SearchParam, r.SearchInclude = searchParams(defs, t)
		for _, op := range operationDefinitions {
			if s.version == fhir.R4 && (op.typ == t || op.typ == "") {
				r.Operation = append(r.Operation, capOp{Name: op.name, Definition: op.definition})
			}
		}
		rest.Resource = append(rest.Resource, r)
	}
	if s.version == fhir.STU3 { // STU3 has no operations per resource
		for _, op := range operationDefinitions {
			rest.Operation = append(rest.Operation, capOp{Name: op.name, Definition: map[string]string{"reference": op.definition}})
		}
	}
	cs.Rest = []capRest{rest}
	return cs
}

// searchParams are the search parameters of type t the search engine
// supports (fhir/search parses exactly those compiled into the spec
// tables, plus _id and _lastUpdated), and the _include values they allow.
func searchParams(defs *spec.Definitions, t string) ([]capSearchParam, []string) {
	out := []capSearchParam{{Name: "_id", Type: "token"}, {Name: "_lastUpdated", Type: "date"}}
	var includes []string
	for _, p := range defs.SearchParams(t) {
		if p.Code == "_id" || p.Code == "_lastUpdated" {
			continue
		}
		out = append(out, capSearchParam{Name: p.Code, Type: p.Type.String()})
		if p.Type == spec.Reference {
			includes = append(includes, t+":"+p.Code)
		}
	}
	return out, includes
}

// resourceTypes are the resource types of FHIR version v (from the spec
// tables); the URL's type must be one of them.
func resourceTypes(v fhir.Version) map[string]bool {
	list := spec.For(v).ResourceTypes()
	m := make(map[string]bool, len(list))
	for _, t := range list {
		m[t] = true
	}
	return m
}
