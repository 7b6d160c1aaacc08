package hvm

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"strings"

	"github.com/strata-vm/strata/storage"
	"go.yaml.in/yaml/v3"
)

// Marshal writes g as a YAML guest definition (snake_case keys, with
// api_version). Unlike String and JSON, YAML keeps passwords: it is the
// definition itself, to be stored with the permissions of a secret.
func Marshal(g *Guest) ([]byte, error) {
	c := *g
	if c.APIVersion == "" {
		c.APIVersion = APIVersion
	}
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(&c); err != nil {
		return nil, fmt.Errorf("encode guest %q: %w", g.Name, err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("encode guest %q: %w", g.Name, err)
	}
	return buf.Bytes(), nil
}

// Unmarshal reads a YAML guest definition; name is the file name used in
// errors. Unknown keys and a missing or unknown api_version are errors.
// The result is as written: call FillDefaults and Validate next.
func Unmarshal(name string, data []byte) (*Guest, error) {
	if len(data) > MaxConfigSize {
		return nil, storage.Errorf(storage.ErrInvalid, "%s: %d bytes is larger than the %d bytes a guest definition may have", name, len(data), MaxConfigSize)
	}
	var probe struct {
		APIVersion string `yaml:"api_version"`
	}
	if err := yaml.Unmarshal(data, &probe); err != nil {
		return nil, storage.Errorf(storage.ErrInvalid, "%s: not a YAML guest definition: %w", name, err)
	}
	switch probe.APIVersion {
	case APIVersion:
	case "":
		return nil, storage.Errorf(storage.ErrInvalid, "%s: api_version is missing; add the line \"api_version: %s\"", name, APIVersion)
	default:
		return nil, storage.Errorf(storage.ErrInvalid, "%s: api_version %q is not supported by this strata; write api_version: %s", name, probe.APIVersion, APIVersion)
	}
	// yaml.v3 truncates a float into an integer field (memory: 1.9 would
	// be 1 MiB): refuse one first, naming its key.
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err == nil {
		if key := floatInInt(&root, reflect.TypeOf(Guest{}), ""); key != "" {
			return nil, storage.Errorf(storage.ErrInvalid, "%s: %s must be a whole number", name, key)
		}
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var g Guest
	if err := dec.Decode(&g); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, storage.Errorf(storage.ErrInvalid, "%s: the file is empty", name)
		}
		return nil, storage.Errorf(storage.ErrInvalid, "%s: %w; see the guest schema (hvm.Guest) for the keys", name, err)
	}
	return &g, nil
}

// floatInInt returns the path of the first non-integer number written where
// t (a struct, slice or map type, through pointers) holds an integer, or "".
func floatInInt(n *yaml.Node, t reflect.Type, path string) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			if p := floatInInt(c, t, path); p != "" {
				return p
			}
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			key, val := n.Content[i].Value, n.Content[i+1]
			var ft reflect.Type
			switch t.Kind() {
			case reflect.Struct:
				for j := 0; j < t.NumField(); j++ {
					if tag, _, _ := strings.Cut(t.Field(j).Tag.Get("yaml"), ","); tag == key {
						ft = t.Field(j).Type
					}
				}
			case reflect.Map:
				ft = t.Elem()
			}
			if ft == nil {
				continue
			}
			sub := key
			if path != "" {
				sub = path + "." + key
			}
			if p := floatInInt(val, ft, sub); p != "" {
				return p
			}
		}
	case yaml.SequenceNode:
		if t.Kind() == reflect.Slice || t.Kind() == reflect.Array {
			for i, c := range n.Content {
				if p := floatInInt(c, t.Elem(), fmt.Sprintf("%s.%d", path, i)); p != "" {
					return p
				}
			}
		}
	case yaml.ScalarNode:
		switch t.Kind() {
		case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64, reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
			if n.Tag == "!!float" {
				return path
			}
		}
	}
	return ""
}

// LoadFile reads a YAML guest definition from path.
func LoadFile(path string) (*Guest, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read guest definition: %w", err)
	}
	return Unmarshal(path, data)
}

// MaxConfigSize bounds the guest definitions and configs strata reads
// (1 MiB): far above any real one, and it keeps parsing cheap.
const MaxConfigSize = 1 << 20
