package iu

import "context"

// A principal is who makes a change, as an adapter established it: the name
// of the API token a request was authenticated with (HTTP, the console),
// or the operating-system user at the command line. The engine records
// every change under the principal's name. An actor that a client names
// itself (iu gate set --actor mallory) is kept beside it as what was
// claimed, never instead of it: anyone may claim anything.

type principalKey struct{}

// NewContextWithPrincipal returns ctx carrying the principal's name.
func NewContextWithPrincipal(ctx context.Context, name string) context.Context {
	return context.WithValue(ctx, principalKey{}, name)
}

// PrincipalFromContext returns the principal's name, or "" if ctx carries
// none.
func PrincipalFromContext(ctx context.Context) string {
	name, _ := ctx.Value(principalKey{}).(string)
	return name
}

// Who is how a change is recorded: By, the principal who made it, and
// Claimed, the actor the client named, when it named one other than By.
type Who struct {
	By      string
	Claimed string
}

// claim checks the actor a caller named for a change and attributes the
// change (see who). The actor may be empty when ctx carries a principal.
func claim(ctx context.Context, actor string) (Who, error) {
	if actor != "" || PrincipalFromContext(ctx) == "" {
		if err := CheckActor(actor); err != nil {
			return Who{}, err
		}
	}
	return who(ctx, actor), nil
}

// claimIfApplied is claim for an operation that writes only when apply: a dry
// run attributes nothing, so it needs no actor, though one it is given must
// be valid.
func claimIfApplied(ctx context.Context, actor string, apply bool) (Who, error) {
	if !apply && actor == "" {
		return Who{}, nil
	}
	return claim(ctx, actor)
}

// who attributes a change: to the principal in ctx, with the actor the
// caller named kept as claimed; without a principal (the Go API), to the
// actor named; with neither, to "iu".
func who(ctx context.Context, actor string) Who {
	by := PrincipalFromContext(ctx)
	switch {
	case by == "" && actor != "":
		return Who{By: actor}
	case by == "":
		return Who{By: "iu"}
	case actor == by:
		actor = ""
	}
	return Who{By: by, Claimed: actor}
}
