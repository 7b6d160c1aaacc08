package snapshot

import (
	"encoding/json"
	"testing"
	"time"
)

// Golden records and clone journals written when their times were
// strings (RFC 3339 with nanoseconds) read as the same instants.
func TestGoldenRecordTimesOfEarlierCatalogs(t *testing.T) {
	var g goldenRecord
	if err := json.Unmarshal([]byte(`{"id":"a","name":"base","created":"2026-11-25T13:21:29.123456789Z","state":"ready"}`), &g); err != nil {
		t.Fatal(err)
	}
	var j cloneJournal
	if err := json.Unmarshal([]byte(`{"op":"clone","paths":[],"started":"2026-11-25T13:21:30Z"}`), &j); err != nil {
		t.Fatal(err)
	}
	want := time.Date(2026, 11, 25, 13, 21, 29, 123456789, time.UTC)
	if !g.Created.Equal(want) || !j.Started.Equal(want.Add(time.Second-123456789)) {
		t.Errorf("created %v, started %v", g.Created, j.Started)
	}
}
