package importer

import (
	"strings"
	"sync"

	"github.com/schakel-nl/schakel/fhir"
	"github.com/schakel-nl/schakel/fhir/spec"
)

// other is the FHIR version that is not v.
func other(v fhir.Version) fhir.Version {
	if v == fhir.R4 {
		return fhir.STU3
	}
	return fhir.R4
}

// elementNames holds, per FHIR version and resource type, the JSON member
// names a resource of that type may have at its top level.
var elementNames struct {
	sync.Mutex
	m map[fhir.Version]map[string]map[string]bool
}

func topLevelNames(v fhir.Version, typ string) map[string]bool {
	elementNames.Lock()
	defer elementNames.Unlock()
	if elementNames.m == nil {
		elementNames.m = make(map[fhir.Version]map[string]map[string]bool)
	}
	byType := elementNames.m[v]
	if byType == nil {
		byType = make(map[string]map[string]bool)
		elementNames.m[v] = byType
	}
	if names, ok := byType[typ]; ok {
		return names
	}
	defs := spec.For(v)
	var names map[string]bool
	if defs != nil && defs.IsResourceType(typ) {
		names = map[string]bool{"resourceType": true}
		for _, e := range defs.Elements(typ) {
			rest, ok := strings.CutPrefix(e.Path, typ+".")
			if !ok || strings.Contains(rest, ".") {
				continue
			}
			if name, choice := strings.CutSuffix(rest, "[x]"); choice {
				for _, t := range e.Types {
					names[name+strings.ToUpper(t[:1])+t[1:]] = true
				}
				continue
			}
			names[rest] = true
		}
	}
	byType[typ] = names
	return names
}

// fits reports whether a resource of type typ with these top-level members
// is valid FHIR v as far as its type and top-level element names go.
func fits(v fhir.Version, typ string, keys []string) bool {
	names := topLevelNames(v, typ)
	if names == nil {
		return false
	}
	for _, k := range keys {
		// "_status" carries the id and extensions of the primitive "status".
		if !names[strings.TrimPrefix(k, "_")] {
			return false
		}
	}
	return true
}

// versionMismatch reports whether a resource is recognisably of the other
// FHIR version than want: it does not fit want and does fit the other.
// Content that fits neither (or both) is taken to be of want; the store
// checks what it can.
func versionMismatch(want fhir.Version, typ string, top []fhir.Member) bool {
	keys := make([]string, len(top))
	for i, m := range top {
		keys[i] = m.Key
	}
	return !fits(want, typ, keys) && fits(other(want), typ, keys)
}
