package intake

import "testing"

// BenchmarkDecodeStructured reads one structured event of the common shape
// (a null inside its data), and one with a null attribute iu rewrites.
func BenchmarkDecodeStructured(b *testing.B) {
	for name, body := range map[string]string{
		"plain":          `{"specversion":"1.0","id":"e-1","source":"hr","type":"hr.hired","subject":"Ada","iutemplate":"tpl:wf:onboarding/v2","data":{"manager":"Charles","team":"analytics","start_date":"2026-01-05","buddy":null}}`,
		"null_attribute": `{"specversion":"1.0","id":"e-1","source":"hr","type":"hr.hired","subject":"Ada","iutemplate":"tpl:wf:onboarding/v2","datacontenttype":null,"data":{"manager":"Charles","team":"analytics","start_date":"2026-01-05","buddy":null}}`,
	} {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := DecodeStructured([]byte(body)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
