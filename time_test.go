package iu_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/iu-engine/iu"
)

// iu's times always have three digits of milliseconds, in UTC, as the
// stores keep them: encoding/json's own form would drop the trailing zero
// of 10:32:54.090.
func TestTimeHasThreeDigits(t *testing.T) {
	at := time.Date(2026, 11, 27, 10, 32, 54, 90_123_456, time.FixedZone("CET", 3600))
	got, err := json.Marshal(struct {
		At iu.Time `json:"at"`
	}{iu.TimeOf(at)})
	if err != nil || string(got) != `{"at":"2026-11-27T09:32:54.090Z"}` {
		t.Fatalf("%s %v", got, err)
	}
	if s := iu.TimeOf(at).String(); s != "2026-11-27T09:32:54.090Z" {
		t.Fatalf("String: %s", s)
	}
	var back iu.Time
	if err := json.Unmarshal(got[6:len(got)-1], &back); err != nil || !back.Equal(at.Truncate(time.Millisecond)) {
		t.Fatalf("read back %v %v", back, err)
	}
	if b, _ := json.Marshal(iu.Time{}); string(b) != "null" || (iu.Time{}).String() != "" {
		t.Fatalf("the zero time: %s", b)
	}
}
