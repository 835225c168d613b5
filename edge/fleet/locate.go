package fleet

import (
	"context"
	"fmt"
)

// Locate returns room's owner without placing it: the instance its entry
// names when that instance is registered now under the entry's URL, and
// false when the room has no entry or its owner is gone. The server API
// asks this: a request about a room must not create one. A room draining
// away is still located at its owner until the entry moves.
func (f *Fleet) Locate(ctx context.Context, room string) (Instance, bool, error) {
	c, ok, err := timedFound(f.m, opLookup, func() (Claim, bool, error) { return f.store.Lookup(ctx, room) })
	if err != nil || !ok {
		return Instance{}, false, wrapUnavailable(err)
	}
	owner, live, err := timedFound(f.m, opInstance, func() (Instance, bool, error) { return f.store.Instance(ctx, c.Owner) })
	if err != nil || !live || owner.URL != c.URL {
		return Instance{}, false, wrapUnavailable(err)
	}
	return owner, true, nil
}

func wrapUnavailable(err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%w: %w", ErrUnavailable, err)
}
