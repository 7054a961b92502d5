package node

import (
	"fmt"
	"reflect"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
)

// The admin API and the overlay file speak the configuration file's shape:
// the koanf keys, so that an operator can copy an agreement or a
// participant between the YAML file and a JSON body unchanged.

// koanfShape is v as the configuration file would spell it: structs become
// maps keyed by their koanf tags, zero values are left out and durations
// are written as "10s".
func koanfShape(v any) any {
	out, _ := shape(reflect.ValueOf(v))
	return out
}

var durationT = reflect.TypeFor[time.Duration]()

func shape(v reflect.Value) (any, bool) {
	if !v.IsValid() {
		return nil, false
	}
	if v.Type() == durationT {
		if v.Int() == 0 {
			return nil, false
		}
		return time.Duration(v.Int()).String(), true
	}
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if v.IsNil() {
			return nil, false
		}
		return shape(v.Elem())
	case reflect.Struct:
		m := map[string]any{}
		t := v.Type()
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("koanf"), ",")
			if !f.IsExported() || name == "" || name == "-" {
				continue
			}
			if x, ok := shape(v.Field(i)); ok {
				m[strings.ToLower(name)] = x
			}
		}
		return m, len(m) > 0
	case reflect.Map:
		if v.Len() == 0 {
			return nil, false
		}
		m := make(map[string]any, v.Len())
		for it := v.MapRange(); it.Next(); {
			x, _ := shape(it.Value())
			m[fmt.Sprint(it.Key().Interface())] = x
		}
		return m, true
	case reflect.Slice:
		if v.Len() == 0 {
			return nil, false
		}
		s := make([]any, v.Len())
		for i := range s {
			s[i], _ = shape(v.Index(i))
		}
		return s, true
	}
	if v.IsZero() {
		return nil, false
	}
	return v.Interface(), true
}

// fromKoanfShape decodes in (a JSON object decoded into map[string]any)
// into out the way the configuration loader does (koanf tags, durations
// from strings), and refuses a key out does not know, as the node refuses
// one in its configuration file.
func fromKoanfShape(in any, out any) error {
	dec, err := mapstructure.NewDecoder(&mapstructure.DecoderConfig{
		TagName: "koanf", Result: out, ErrorUnused: true, WeaklyTypedInput: true,
		DecodeHook: mapstructure.ComposeDecodeHookFunc(mapstructure.StringToTimeDurationHookFunc(), mapstructure.TextUnmarshallerHookFunc()),
	})
	if err != nil {
		return err
	}
	return dec.Decode(in)
}
