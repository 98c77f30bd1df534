package stage

import (
	"time"

	"github.com/cimstream/cimstream/internal/retry"
)

// Retries is the policy for writes; Rejoins for topic listing, group membership and partition start.
var (
	Retries = retry.Backoff{Min: 100 * time.Millisecond, Max: 5 * time.Second}
	Rejoins = retry.Backoff{Min: time.Second, Max: 30 * time.Second}
)
