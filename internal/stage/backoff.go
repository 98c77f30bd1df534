package stage

import (
	"context"
	"time"

	"github.com/cimstream/cimstream/internal/retry"
)

// Backoff is the one retry policy (internal/retry): exponential from Min to Max, with jitter.
type Backoff = retry.Backoff

// Retries is the policy for writes; Rejoins for topic listing, group membership and partition start.
var (
	Retries = Backoff{Min: 100 * time.Millisecond, Max: 5 * time.Second}
	Rejoins = Backoff{Min: time.Second, Max: 30 * time.Second}
)

// sleep waits d or until ctx ends; it reports whether the full wait elapsed.
func sleep(ctx context.Context, d time.Duration) bool { return retry.Sleep(ctx, d) }
