package node

import (
	"fmt"
	"net/url"
	"time"
)

// PACSConfig is a participant's PACS, for Beeldbeschikbaarheid (package
// beeld, mounted as a hosted care application): the node answers
// ImagingStudy searches from it (QIDO-RS) and proxies its DICOMweb
// (QIDO-RS, WADO-RS) to partners.
type PACSConfig struct {
	// URL is the PACS's DICOMweb base: QIDO-RS and WADO-RS live under it
	// (https, or http on a private network).
	URL string `koanf:"url"`
	// CAFiles verify the PACS's server certificate (system roots when empty).
	CAFiles []string `koanf:"cafiles"`
	// Timeout bounds the wait for the PACS's answer to start (default 30s);
	// images then stream without a bound.
	Timeout time.Duration `koanf:"timeout"`
}

// validatePACS checks participants[].pacs.
func (c *Config) validatePACS() []error {
	var errs []error
	for i, p := range c.Participants {
		if p.PACS.URL == "" {
			continue
		}
		u, err := url.Parse(p.PACS.URL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" {
			errs = append(errs, fmt.Errorf("participants[%d].pacs.url must be an absolute http(s) URL without query", i))
		}
		if p.PACS.Timeout < 0 {
			errs = append(errs, fmt.Errorf("participants[%d].pacs.timeout must not be negative", i))
		}
	}
	return errs
}
