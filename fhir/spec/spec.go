// Package spec holds the FHIR core definitions Schakel needs at run time, as
// compact Go tables generated from the HL7 StructureDefinitions and
// SearchParameters of each version (see definitions/README.md): the resource
// types, the elements of every resource and complex type, and the search
// parameters of every resource type with their FHIRPath expression compiled
// into element paths.
package spec

//go:generate go run ./internal/gen

import (
	"sort"
	"sync"

	"github.com/schakel-nl/schakel/fhir"
)

// ParamType is the type of a search parameter.
type ParamType uint8

// The search parameter types.
const (
	Token ParamType = iota + 1
	Reference
	Date
	String
	Quantity
	URI
	Number
	Composite
)

var paramTypeNames = [...]string{"", "token", "reference", "date", "string", "quantity", "uri", "number", "composite"}

func (t ParamType) String() string {
	if int(t) < len(paramTypeNames) {
		return paramTypeNames[t]
	}
	return "unknown"
}

// SearchParam is one search parameter of one resource type.
type SearchParam struct {
	Code string
	Type ParamType
	// Paths are the element paths the expression selects, from the resource
	// root; a resource's values for the parameter are the union over Paths.
	Paths []Path
	// Targets are the resource types a reference parameter may point to.
	Targets []string
}

// Path is one FHIRPath expression compiled to a list of steps.
type Path []Step

// Step selects a child element.
type Step struct {
	// Name is the element name; for a choice element (value[x]) the name
	// without [x]: its JSON property is Name followed by the type, capitalised.
	Name string
	// Choice is set for choice elements.
	Choice bool
	// Types are the FHIR types of the element (after any as()/ofType()
	// filter); set on choice steps and on the last step.
	Types []string
	// WhereKey and WhereValue keep only the items whose child WhereKey is the
	// primitive WhereValue (.where(system='email')).
	WhereKey, WhereValue string
	// Resolve keeps only references to this resource type
	// (.where(resolve() is Patient)).
	Resolve string
}

// Element is one element of a resource or complex type, as XML↔JSON
// conversion and value extraction need it.
type Element struct {
	// Path is the full element path, e.g. "Observation.referenceRange.low" or
	// "Observation.value[x]".
	Path string
	// Types are the FHIR type codes; several for a choice element.
	Types []string
	// Repeats is set when the maximum cardinality is "*" (a JSON array).
	Repeats bool
	// ContentRef is the path whose definition this element reuses
	// (e.g. Questionnaire.item.item → "Questionnaire.item").
	ContentRef string
}

// Definitions are the generated tables of one FHIR version.
type Definitions struct {
	Version fhir.Version
	// resourceTypes is sorted.
	resourceTypes []string
	// params per resource type, sorted by code.
	params map[string][]SearchParam
	// elements per resource or complex type, in definition order.
	elements map[string][]Element

	once  sync.Once
	index map[string]map[string]*SearchParam
}

// For returns the definitions of version v, or nil for an unknown version.
func For(v fhir.Version) *Definitions {
	switch v {
	case fhir.STU3:
		return stu3Definitions
	case fhir.R4:
		return r4Definitions
	}
	return nil
}

// ResourceTypes returns the (concrete) resource types, sorted. The slice must
// not be modified.
func (d *Definitions) ResourceTypes() []string { return d.resourceTypes }

// IsResourceType reports whether t is a concrete resource type.
func (d *Definitions) IsResourceType(t string) bool {
	i := sort.SearchStrings(d.resourceTypes, t)
	return i < len(d.resourceTypes) && d.resourceTypes[i] == t
}

// SearchParams returns the search parameters of resource type t, sorted by
// code. The slice must not be modified.
func (d *Definitions) SearchParams(t string) []SearchParam { return d.params[t] }

// SearchParam returns the search parameter code of resource type t, or nil.
func (d *Definitions) SearchParam(t, code string) *SearchParam {
	d.once.Do(func() {
		d.index = make(map[string]map[string]*SearchParam, len(d.params))
		for typ, ps := range d.params {
			m := make(map[string]*SearchParam, len(ps))
			for i := range ps {
				m[ps[i].Code] = &ps[i]
			}
			d.index[typ] = m
		}
	})
	return d.index[t][code]
}

// Elements returns the elements of resource or complex type t in definition
// order, the first being the type itself. The slice must not be modified.
func (d *Definitions) Elements(t string) []Element { return d.elements[t] }

// InSummary reports whether the element at path (e.g. "Patient.name",
// "Observation.component.code", a choice as "Observation.value[x]") is
// marked isSummary in the definitions: what _summary=true returns.
func (d *Definitions) InSummary(path string) bool { return summaryElements[d.Version][path] }

// Mandatory reports whether the top-level element at path (e.g.
// "Observation.status") has a minimum cardinality of 1 or more.
func (d *Definitions) Mandatory(path string) bool { return mandatoryElements[d.Version][path] }
