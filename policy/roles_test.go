package policy

import "testing"

func TestUZIRoleCodeList(t *testing.T) {
	cases := []struct {
		code, display, parent string
		valid                 bool
	}{
		{"01.015", "Huisarts", "01.000", true},
		{"01.000", "Arts", "", true},
		{"17.075", "Openbaar apotheker", "17.000", true},
		{"30.000", "Verpleegkundige", "", true},
		{"81.000", "Physician assistant", "", true},
		{"30.067", "Verpl. spec. intensieve zorg bij som. aandoeningen", "30.000", false}, // withdrawn 2021
		{"01.099", "", "", false},
		{"00.000", "", "", false}, // the role of a server certificate, not of a person
		{"1.015", "", "", false},
	}
	for _, tc := range cases {
		t.Run(tc.code, func(t *testing.T) {
			if got := ValidRoleCode(tc.code); got != tc.valid {
				t.Errorf("ValidRoleCode = %t, want %t", got, tc.valid)
			}
			r, ok := LookupRole(tc.code)
			if ok != (tc.display != "") || r.Display != tc.display || r.Parent != tc.parent {
				t.Errorf("LookupRole = %+v %t", r, ok)
			}
		})
	}
	if n := len(RoleCodes()); n != 83 {
		t.Errorf("%d codes, want the 83 of the source", n)
	}
}

func TestParseRolesRefusesBadLists(t *testing.T) {
	cases := map[string]string{
		"unknown key":    "codes:\n  - {code: \"01.000\", display: Arts, colour: red}\n",
		"malformed code": "codes:\n  - {code: \"1.000\", display: Arts}\n",
		"no display":     "codes:\n  - {code: \"01.000\"}\n",
		"duplicate":      "codes:\n  - {code: \"01.000\", display: Arts}\n  - {code: \"01.000\", display: Arts}\n",
		"missing parent": "codes:\n  - {code: \"01.015\", display: Huisarts, parent: \"01.000\"}\n",
	}
	for name, file := range cases {
		if _, err := parseRoles([]byte(file)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := parseRoles([]byte("codes:\n  - {code: \"01.000\", display: Arts}\n  - {code: \"01.015\", display: Huisarts, parent: \"01.000\"}\n")); err != nil {
		t.Fatal(err)
	}
}
