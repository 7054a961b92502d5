package policy

import (
	"bytes"
	_ "embed"
	"fmt"
	"sort"

	"go.yaml.in/yaml/v3"
)

// The UZI role code list is data, not code: see codes/uzi-rolcode.yaml for
// its source. It lives in a sub-directory so the policy loader, which reads
// every *.yaml beside it as a care application's policy, never sees it.
//
//go:embed codes/uzi-rolcode.yaml
var uziRoleFile []byte

// RoleCode is one entry of the UZI role code list (RoleCodeNL).
type RoleCode struct {
	Code    string `yaml:"code"`
	Display string `yaml:"display"`
	// Parent is the profession a specialism belongs to (01.015 Huisarts →
	// 01.000 Arts); empty for a profession.
	Parent string `yaml:"parent"`
	// Inactive is the date the register withdrew the code; empty while it
	// is in use.
	Inactive string `yaml:"inactive"`
}

// Active reports whether cards may still carry the code.
func (r RoleCode) Active() bool { return r.Inactive == "" }

// uziRoles is the list by code, read once at start: a fault in the embedded
// file is a build fault, so it panics in init like a bad regexp would.
var uziRoles = mustRoles(uziRoleFile)

func mustRoles(b []byte) map[string]RoleCode {
	m, err := parseRoles(b)
	if err != nil {
		panic("policy: embedded UZI role code list: " + err.Error())
	}
	return m
}

func parseRoles(b []byte) (map[string]RoleCode, error) {
	var doc struct {
		System string     `yaml:"system"`
		OID    string     `yaml:"oid"`
		Codes  []RoleCode `yaml:"codes"`
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&doc); err != nil {
		return nil, err
	}
	m := make(map[string]RoleCode, len(doc.Codes))
	for _, c := range doc.Codes {
		if !roleCodePattern.MatchString(c.Code) || c.Display == "" {
			return nil, fmt.Errorf("entry %q %q: a code has the form 01.015 and a display name", c.Code, c.Display)
		}
		if _, dup := m[c.Code]; dup {
			return nil, fmt.Errorf("code %s is listed twice", c.Code)
		}
		m[c.Code] = c
	}
	for _, c := range m {
		if _, ok := m[c.Parent]; c.Parent != "" && !ok {
			return nil, fmt.Errorf("code %s: parent %s is not listed", c.Code, c.Parent)
		}
	}
	return m, nil
}

// LookupRole returns the UZI role code list's entry for code.
func LookupRole(code string) (RoleCode, bool) {
	r, ok := uziRoles[code]
	return r, ok
}

// RoleCodes returns the whole UZI role code list, in code order.
func RoleCodes() []RoleCode {
	out := make([]RoleCode, 0, len(uziRoles))
	for _, r := range uziRoles {
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Code < out[j].Code })
	return out
}

// ValidRoleCode reports whether s is a role code the UZI register issues:
// on the list and not withdrawn.
func ValidRoleCode(s string) bool {
	r, ok := uziRoles[s]
	return ok && r.Active()
}

// roleCodeFault says what is wrong with a role code in a policy file, or ""
// when it is a code the register issues.
func roleCodeFault(code string) string {
	if !roleCodePattern.MatchString(code) {
		return fmt.Sprintf("%q is not an UZI role code (form 01.015)", code)
	}
	r, ok := uziRoles[code]
	if !ok {
		return fmt.Sprintf("%q is not on the UZI role code list (RoleCodeNL, policy/codes/uzi-rolcode.yaml)", code)
	}
	if !r.Active() {
		return fmt.Sprintf("%s (%s) was withdrawn by the UZI register on %s; no card carries it", code, r.Display, r.Inactive)
	}
	return ""
}
