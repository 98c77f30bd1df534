package chaos_test

import (
	"context"
	"testing"
	"time"

	"github.com/cimstream/cimstream/internal/config"
)

// Session fault test of the coalesced changelog (docs/inbound.md, "Coalesced changelog"): a batch writes
// one changelog state per key, so a crash can lose every state of a batch while its CCM records landed.
// The changelog topic is made to refuse writes (min.insync.replicas above its replication factor: the
// broker answers NOT_ENOUGH_REPLICAS, which the runtime retries), so the batches in hand have their CCM
// records acknowledged and their changelog records not; cimstream is SIGKILLed there, twice during a
// backlog. The restarted instance replays those batches from the earlier states: the accounts (split,
// merge, order, divergent duplicates) must stay 0.

// blockChangelog makes the changelog topic refuse acks=all writes (on) or take them again (off).
func blockChangelog(t *testing.T, cfg config.Config, on bool) {
	t.Helper()
	if on {
		kafkaConfigs(t, "--alter", "--entity-type", "topics", "--entity-name", cfg.Topics.Sessions, "--add-config", "min.insync.replicas=2")
		time.Sleep(time.Second) // the broker applies the change from the metadata log shortly after
		return
	}
	kafkaConfigs(t, "--alter", "--entity-type", "topics", "--entity-name", cfg.Topics.Sessions, "--delete-config", "min.insync.replicas")
}

// topicCount is the number of records written to topic (sum of end offsets), -1 when unknown.
func topicCount(t *testing.T, cfg config.Config, topic string) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ends, err := endOffsets(ctx, factoryClient(t, cfg), topic)
	if err != nil {
		return -1
	}
	var n int64
	for _, e := range ends {
		n += e
	}
	return n
}

// killBetweenWrites waits (at most limit) until the CCM topic got records past from and past the last
// changelog write, then both stood still for a second (the batches in hand wait on their changelog
// records), and kills in there. It fails the test when no CCM record landed after the last changelog
// record: the kill would not be between the two writes.
func killBetweenWrites(t *testing.T, cfg config.Config, in *instance, from int64, limit time.Duration, rc *replayCount) {
	t.Helper()
	ccm, changelog := ccmCount(t, cfg), topicCount(t, cfg, cfg.Topics.Sessions)
	ccmAtChangelog, still := ccm, time.Now()
	for deadline := time.Now().Add(limit); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		n, c := ccmCount(t, cfg), topicCount(t, cfg, cfg.Topics.Sessions)
		if c != changelog {
			ccmAtChangelog = n
		}
		if n != ccm || c != changelog {
			ccm, changelog, still = n, c, time.Now()
			continue
		}
		if n > from && n > ccmAtChangelog && time.Since(still) >= time.Second {
			break
		}
	}
	rc.add(in)
	in.kill(t)
	t.Logf("killed with the changelog blocked: CCM records %d (%d at the last changelog write, %d before), changelog records %d: %s",
		ccm, ccmAtChangelog, from, changelog, pipelineProgress(t, cfg))
	if ccm <= from || ccm <= ccmAtChangelog {
		t.Fatalf("no CCM record landed after the last changelog write (%d): the kill was not between the CCM and changelog writes", ccm)
	}
}

// 9. A backlog (record times hours old, 45-min gaps), cimstream SIGKILLed twice while batches have their
// CCM records written and their changelog states not.
func TestChaosSessionsKilledBetweenCCMAndChangelogWrite(t *testing.T) {
	cfg, path := sessionsSetup(t)
	const gap = 45 * time.Minute
	s := newScript(scriptOptions{seed: 10, keyed: 16, unkeyed: 4, conversations: 10 * scale(), maxBody: 6, idleGaps: true})
	datePastEnding(s, gap)
	p := sessionsProducer(t, cfg)
	rounds := s.rounds()
	half := len(rounds) / 2
	var rc replayCount

	// The first half is there when cimstream starts, with the changelog refusing writes from the start.
	produceRounds(t, p, rounds[:half])
	blockChangelog(t, cfg, true)
	in := start(t, path)
	killBetweenWrites(t, cfg, in, 0, 60*time.Second, &rc)
	blockChangelog(t, cfg, false)

	// The second half piles up while it is down; the restarted instance restores the states of the
	// first half and meets a refusing changelog again.
	produceRounds(t, p, rounds[half:])
	blockChangelog(t, cfg, true)
	in = start(t, path)
	killBetweenWrites(t, cfg, in, ccmCount(t, cfg), 60*time.Second, &rc)
	blockChangelog(t, cfg, false)

	in = start(t, path)
	checkSessions(t, cfg, s, 0)
	rc.add(in)
	rc.log(t)
}
