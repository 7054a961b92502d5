package sqlstore

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"time"
)

// member is one member of a JSON object, its value byte-for-byte as received.
type member struct {
	key   string
	value json.RawMessage
}

func members(obj []byte) ([]member, error) {
	dec := json.NewDecoder(bytes.NewReader(obj))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil, fmt.Errorf("not a JSON object")
	}
	var out []member
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil, err
		}
		key, _ := t.(string)
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, err
		}
		out = append(out, member{key, raw})
	}
	return out, nil
}

// LastUpdatedLayout is how meta.lastUpdated is written: UTC, milliseconds.
const LastUpdatedLayout = "2006-01-02T15:04:05.000Z07:00"

// withMeta returns body with id, meta.versionId and meta.lastUpdated set;
// resourceType, id and meta come first, every other member (and every other
// member of meta, such as profile) is kept as received.
func withMeta(body []byte, id, versionID string, lastUpdated time.Time) ([]byte, error) {
	ms, err := members(body)
	if err != nil {
		return nil, err
	}
	var meta []member
	var rest []member
	var resourceType json.RawMessage
	for _, m := range ms {
		switch m.key {
		case "resourceType":
			resourceType = m.value
		case "id":
		case "meta":
			if bytes.Equal(bytes.TrimSpace(m.value), []byte("null")) {
				continue
			}
			if meta, err = members(m.value); err != nil {
				return nil, fmt.Errorf("meta: %v", err)
			}
		default:
			rest = append(rest, m)
		}
	}
	var b bytes.Buffer
	b.Grow(len(body) + 96)
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
		if m.key == "versionId" || m.key == "lastUpdated" {
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

func writeMember(b *bytes.Buffer, m member) {
	b.WriteByte(',')
	k, _ := json.Marshal(m.key)
	b.Write(k)
	b.WriteByte(':')
	b.Write(m.value)
}
