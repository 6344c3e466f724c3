package iu

import (
	"context"
	"errors"
	"strings"
	"unicode"
)

// ComposeResult describes a composed instance.
type ComposeResult struct {
	InstanceKey string `json:"instance_key"`
	TemplateKey string `json:"template_key"`
	Digest      Digest `json:"digest"`
	Pieces      int    `json:"pieces"`
}

// CheckInstanceKey validates a manually chosen instance key.
func CheckInstanceKey(key string) error {
	if key == "" {
		return Errorf(ErrInvalidInput, "instance key is required")
	}
	if len(key) > 256 || strings.IndexFunc(key, func(r rune) bool { return unicode.IsControl(r) || unicode.IsSpace(r) }) >= 0 {
		return Errorf(ErrInvalidInput, "instance key %q must be printable, without spaces, at most 256 bytes", key)
	}
	if strings.HasPrefix(key, "tpl:") || strings.HasPrefix(key, "tpl-inst:auto:") {
		return Errorf(ErrInvalidInput, "instance key %q: the prefixes tpl: and tpl-inst:auto: are reserved (try tpl-inst:manual:...)", key)
	}
	return nil
}

// Compose makes an instance of a template under a chosen key and records
// its lineage with mode manual. The composer gate must be on.
func (e *Engine) Compose(ctx context.Context, req ComposeRequest) (ComposeResult, error) {
	if _, err := ParseTemplateKey(req.TemplateKey); err != nil {
		return ComposeResult{}, err
	}
	if err := CheckInstanceKey(req.InstanceKey); err != nil {
		return ComposeResult{}, err
	}
	if err := CheckActor(req.Actor); err != nil {
		return ComposeResult{}, err
	}
	var res ComposeResult
	err := e.update(ctx, func(tx Tx) error {
		g, err := tx.Gates(ctx)
		if err != nil {
			return err
		}
		if !g.ComposerEnabled {
			return Errorf(ErrGateClosed, "gate %s is off: composition is disabled (iu gate set composer_enabled=true)", GateComposer)
		}
		t, err := getTemplate(ctx, tx, req.TemplateKey)
		if err != nil {
			return err
		}
		if err := checkStoredDigest(t); err != nil {
			return err
		}
		in := Instance{
			Key: req.InstanceKey, Title: t.Title, TemplateKey: t.Key, TemplateDigest: t.Digest, Digest: GraphDigest(t.Slots),
			Actor: req.Actor, Mode: ModeManual, Slots: t.Slots, CreatedAt: TimeOf(e.clock()),
		}
		if err := tx.InsertInstances(ctx, []Instance{in}); err != nil {
			if errors.Is(err, ErrInstanceExists) {
				return Errorf(ErrInstanceExists, "instance %q already exists: choose another key", req.InstanceKey)
			}
			return err
		}
		res = ComposeResult{InstanceKey: in.Key, TemplateKey: t.Key, Digest: in.Digest, Pieces: len(t.Slots)}
		return nil
	})
	return res, err
}

// ComposeRequest asks for a manual composition: the older path, where an
// operator names the instance.
type ComposeRequest struct {
	TemplateKey string
	InstanceKey string
	Actor       string
}
