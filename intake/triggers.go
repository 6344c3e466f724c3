package intake

import (
	"context"
	"sync"
	"time"

	"github.com/iu-engine/iu"
)

// TriggerCache holds the engine's triggers for TTL, so that routing a
// batch of events does not cost a read of the store per event. The zero
// value reads the triggers every time.
type TriggerCache struct {
	TTL     time.Duration
	mu      sync.Mutex
	list    []iu.Trigger
	expires time.Time
}

// Get returns the triggers, read again once TTL has passed.
func (tc *TriggerCache) Get(ctx context.Context, e *iu.Engine) ([]iu.Trigger, error) {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	if time.Now().Before(tc.expires) {
		return tc.list, nil
	}
	return tc.load(ctx, e)
}

// Refresh reads the triggers again, unless they were read just now: for an
// event that matched none, in case a trigger was added since.
func (tc *TriggerCache) Refresh(ctx context.Context, e *iu.Engine) ([]iu.Trigger, error) {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	if time.Until(tc.expires) > tc.TTL-10*time.Millisecond {
		return tc.list, nil
	}
	return tc.load(ctx, e)
}

// Forget drops the triggers held, after a change made through this process.
func (tc *TriggerCache) Forget() {
	tc.mu.Lock()
	tc.expires = time.Time{}
	tc.mu.Unlock()
}

func (tc *TriggerCache) load(ctx context.Context, e *iu.Engine) ([]iu.Trigger, error) {
	list, err := e.Triggers(ctx)
	if err != nil {
		return nil, err
	}
	tc.list, tc.expires = list, time.Now().Add(tc.TTL)
	return list, nil
}
