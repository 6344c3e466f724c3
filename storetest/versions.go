package storetest

import (
	"testing"

	"github.com/iu-engine/iu"
)

// A template's versions are listed by version number, and only its own:
// not another kind's, not a longer name that shares the key's beginning.
var _ = register("TemplateVersions", func(t *testing.T, h Harness) {
	v := newEnv(t, h)
	keys := []string{
		"tpl:wf:onboarding/v10", "tpl:wf:onboarding/v2", "tpl:wf:onboarding/v3",
		"tpl:wf:onboarding/vip/v1", "tpl:wf:onboarding-eu/v1", "tpl:file:onboarding/v1", "tpl:wf:other/v4",
	}
	for _, k := range keys {
		v.publish(template(t, k, 2, ""))
	}
	for _, c := range []struct{ key, want string }{
		{"tpl:wf:onboarding/v2", "tpl:wf:onboarding/v2 tpl:wf:onboarding/v3 tpl:wf:onboarding/v10"},
		{"tpl:wf:onboarding/v7", "tpl:wf:onboarding/v2 tpl:wf:onboarding/v3 tpl:wf:onboarding/v10"}, // unpublished
		{"tpl:wf:onboarding/vip/v1", "tpl:wf:onboarding/vip/v1"},
		{"tpl:file:onboarding/v1", "tpl:file:onboarding/v1"},
		{"tpl:wf:nothing/v1", ""},
	} {
		vs, err := v.e.TemplateVersions(v.ctx, c.key)
		if err != nil {
			t.Fatalf("versions of %s: %v", c.key, err)
		}
		got := ""
		for i, ti := range vs {
			if i > 0 {
				got += " "
			}
			got += ti.Key
		}
		if got != c.want {
			t.Errorf("versions of %s: %q, want %q", c.key, got, c.want)
		}
	}
	if _, err := v.e.TemplateVersions(v.ctx, "onboarding"); iu.ErrorCode(err) != iu.CodeInvalid {
		t.Errorf("versions of a malformed key: %v, want invalid", err)
	}
})
