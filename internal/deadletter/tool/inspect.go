package tool

import (
	"cmp"
	"context"
	"slices"
	"strings"
	"time"

	"github.com/cimstream/cimstream/internal/stream"
)

// Inspect configures a read of the dead-letter topic.
type Inspect struct {
	Topic  string
	Filter Filter
	Now    time.Time // ages are measured against it (zero: time.Now())
	// OnLetter, when set, is given each selected dead letter and whether a replay already replayed it.
	OnLetter func(l Letter, replayed bool) error
}

// Summary counts the selected dead letters. A dead letter with several codes counts once under each.
type Summary struct {
	Topic      string         `json:"topic"`
	Letters    int            `json:"deadLetters"` // in the topic
	Selected   int            `json:"selected"`    // matching the filter
	Replayed   int            `json:"replayed"`    // of the selected, already replayed
	ByCode     map[string]int `json:"byCode"`
	BySource   map[string]int `json:"bySourceTopic"`
	ByPipeline map[string]int `json:"byPipeline"`
	ByAge      []AgeCount     `json:"byAge"`
}

// AgeCount is how many selected dead letters are in an age bucket.
type AgeCount struct {
	Bucket string `json:"bucket"`
	Count  int    `json:"count"`
}

// ageBuckets are the age histogram's upper bounds; the last is unbounded.
var ageBuckets = []struct {
	name  string
	under time.Duration
}{
	{"<1h", time.Hour}, {"1h-1d", 24 * time.Hour}, {"1d-7d", 7 * 24 * time.Hour}, {">=7d", 0},
}

// AgeBucket names the bucket of an age.
func AgeBucket(age time.Duration) string {
	for _, b := range ageBuckets {
		if b.under == 0 || age < b.under {
			return b.name
		}
	}
	return ""
}

// Run reads the dead-letter topic up to its end now.
func (in Inspect) Run(ctx context.Context, b Broker) (Summary, error) {
	now := in.Now
	if now.IsZero() {
		now = time.Now()
	}
	s := Summary{Topic: in.Topic, ByCode: map[string]int{}, BySource: map[string]int{}, ByPipeline: map[string]int{}}
	ages := map[string]int{}
	ranges, err := deadLetterRanges(ctx, b, in.Topic)
	if err != nil {
		return s, err
	}
	books, err := readLedger(ctx, b, in.Topic, ranges)
	if err != nil {
		return s, err
	}
	for _, p := range ranges {
		if p.End <= p.First {
			continue
		}
		err = b.Read(ctx, in.Topic, p.Partition, p.First, p.End, func(rec stream.Record) error {
			l, ok := Parse(rec)
			if !ok {
				return nil
			}
			l = books.counted(l, in.Topic, 1<<10)
			s.Letters++
			if !in.Filter.Match(l) {
				return nil
			}
			s.Selected++
			replayed := books.replayed[l.Origin(in.Topic)]
			if replayed {
				s.Replayed++
			}
			for _, c := range l.Codes {
				s.ByCode[c]++
			}
			s.BySource[cmp.Or(l.SourceTopic, "(none)")]++
			s.ByPipeline[cmp.Or(l.Pipeline, "(none)")]++
			ages[AgeBucket(l.Age(now))]++
			if in.OnLetter != nil {
				return in.OnLetter(l, replayed)
			}
			return nil
		})
		if err != nil {
			return s, err
		}
	}
	for _, b := range ageBuckets {
		s.ByAge = append(s.ByAge, AgeCount{Bucket: b.name, Count: ages[b.name]})
	}
	return s, nil
}

// Counts returns a histogram's entries, largest first, then by name.
func Counts(m map[string]int) []AgeCount {
	out := make([]AgeCount, 0, len(m))
	for k, v := range m {
		out = append(out, AgeCount{Bucket: k, Count: v})
	}
	slices.SortFunc(out, func(a, b AgeCount) int {
		return cmp.Or(cmp.Compare(b.Count, a.Count), strings.Compare(a.Bucket, b.Bucket))
	})
	return out
}
