package lifecycle

import (
	"encoding/json"

	"github.com/strata-vm/strata/storage/catalog"
)

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }

func writeJSONFile(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return catalog.WriteFileAtomic(path, append(b, '\n'))
}
