package sqlstore

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/schakel-nl/schakel/fhir"
)

// LastUpdatedLayout is how meta.lastUpdated is written: UTC, milliseconds.
const LastUpdatedLayout = "2006-01-02T15:04:05.000Z07:00"

// withMeta returns body with id, meta.versionId and meta.lastUpdated set;
// resourceType, id and meta come first, every other member (and every other
// member of meta, such as profile) is kept as received. body must have been
// parsed (Parse) or be compared with a stored body after: it is split, not
// checked again.
func withMeta(body []byte, id, versionID string, lastUpdated time.Time) ([]byte, error) {
	ms, err := fhir.SplitMembers(body)
	if err != nil {
		return nil, err
	}
	return membersWithMeta(ms, len(body), id, versionID, lastUpdated)
}

// membersWithMeta is withMeta of the members ms of a body of size bytes.
func membersWithMeta(ms []fhir.Member, size int, id, versionID string, lastUpdated time.Time) ([]byte, error) {
	var err error
	var meta []fhir.Member
	rest := make([]fhir.Member, 0, len(ms))
	var resourceType json.RawMessage
	for _, m := range ms {
		switch m.Key {
		case "resourceType":
			resourceType = m.Value
		case "id":
		case "meta":
			if bytes.Equal(bytes.TrimSpace(m.Value), []byte("null")) {
				continue
			}
			if meta, err = fhir.Members(m.Value); err != nil {
				return nil, fmt.Errorf("meta: %v", err)
			}
		default:
			rest = append(rest, m)
		}
	}
	var b bytes.Buffer
	b.Grow(size + 96)
	b.WriteString(`{"resourceType":`)
	b.Write(resourceType)
	b.WriteString(`,"id":`)
	b.WriteString(strconv.Quote(id))
	b.WriteString(`,"meta":{"versionId":`)
	b.WriteString(strconv.Quote(versionID))
	b.WriteString(`,"lastUpdated":"`)
	b.WriteString(lastUpdated.UTC().Format(LastUpdatedLayout))
	b.WriteByte('"')
	for _, m := range meta {
		if m.Key == "versionId" || m.Key == "lastUpdated" {
			continue
		}
		writeMember(&b, m)
	}
	b.WriteByte('}')
	for _, m := range rest {
		writeMember(&b, m)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

func writeMember(b *bytes.Buffer, m fhir.Member) {
	b.WriteByte(',')
	if plainKey(m.Key) {
		b.WriteByte('"')
		b.WriteString(m.Key)
		b.WriteByte('"')
	} else {
		k, _ := json.Marshal(m.Key)
		b.Write(k)
	}
	b.WriteByte(':')
	b.Write(m.Value)
}

// plainKey tells whether key is written as JSON by quoting it alone, as
// every FHIR element name is.
func plainKey(key string) bool {
	for i := 0; i < len(key); i++ {
		c := key[i]
		if c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			return false
		}
	}
	return true
}

// AsOf is the instant a history read reflects when no write stamped at or
// before now can still commit: versions are stamped to the millisecond, and
// a write stamped in the same millisecond as now may commit after the read.
func AsOf(now time.Time) time.Time {
	return now.UTC().Truncate(time.Millisecond).Add(-time.Millisecond)
}
