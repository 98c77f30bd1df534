package chaos_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cimstream/cimstream/internal/config"
	"github.com/cimstream/cimstream/internal/kafkatest"
)

// Session fault tests: scripted customers (sessions_script_test.go) with START_CHAT / END_CHAT /
// START_CONVERSATION boundaries, keyed and unkeyed, with record times now or hours old, under SIGKILL;
// the checker (sessions_account_test.go) fails on any split, merge, order violation or divergent
// duplicate of a keyed customer. The idle timeout is 30 min, so only intents (and, in the backlog, gaps
// of 45 min in record time) end a conversation.

const sessionsIdle = 30 * time.Minute

func sessionsSetup(t *testing.T) (config.Config, string) {
	t.Helper()
	return setup(t, kafkatest.Brokers(t), func(c *config.Config) {
		c.Inbound.SessionIdleTimeout = sessionsIdle
	})
}

func sessionsProducer(t *testing.T, cfg config.Config) *scriptProducer {
	t.Helper()
	p, err := newScriptProducer(cfg, cfg.Topics.InboundChannels[0])
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.close)
	return p
}

// produceRounds writes the rounds in send order, in chunks of ten rounds.
func produceRounds(t *testing.T, p *scriptProducer, rounds [][]*scriptMsg) {
	t.Helper()
	for i := 0; i < len(rounds); i += 10 {
		var chunk []*scriptMsg
		for _, r := range rounds[i:min(i+10, len(rounds))] {
			chunk = append(chunk, r...)
		}
		if err := p.send(context.Background(), chunk); err != nil {
			t.Fatalf("produce: %v", err)
		}
	}
}

// liveProducer writes a script round by round, one round every interval, in the background (record
// times: now).
type liveProducer struct {
	rounds int
	sent   atomic.Int64 // rounds written
	done   chan error   // the first error, or nil when every round was written
}

func produceLive(p *scriptProducer, s *script, interval time.Duration) *liveProducer {
	rounds := s.rounds()
	lp := &liveProducer{rounds: len(rounds), done: make(chan error, 1)}
	go func() {
		for _, r := range rounds {
			if err := p.send(context.Background(), r); err != nil {
				lp.done <- err
				return
			}
			lp.sent.Add(1)
			time.Sleep(interval)
		}
		lp.done <- nil
	}()
	return lp
}

// waitShare waits (at most limit) until the producer wrote share percent of its rounds.
func (lp *liveProducer) waitShare(share int, limit time.Duration) {
	for deadline := time.Now().Add(limit); lp.sent.Load()*100 < int64(lp.rounds*share) && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
}

// waitNext waits (at most limit) until the next round was written.
func (lp *liveProducer) waitNext(limit time.Duration) {
	n := lp.sent.Load()
	for deadline := time.Now().Add(limit); lp.sent.Load() == n && time.Now().Before(deadline); {
		time.Sleep(2 * time.Millisecond)
	}
}

func (lp *liveProducer) finish(t *testing.T) {
	t.Helper()
	select {
	case err := <-lp.done:
		if err != nil {
			t.Fatalf("produce: %v", err)
		}
	case <-time.After(2 * time.Minute):
		t.Fatal("the producer did not finish within 2 min")
	}
}

// replays reads cimstream_session_replays_total of a running instance: duplicates answered from the
// remembered decisions, and those older than them (answered with the current ids, docs/inbound.md).
func replays(in *instance) (remembered, forgotten int) {
	resp, err := http.Get("http://" + in.admin + "/metrics")
	if err != nil {
		return -1, -1
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		var v float64
		if _, err := fmt.Sscanf(line, `cimstream_session_replays_total{remembered="true"} %g`, &v); err == nil {
			remembered = int(v)
		}
		if _, err := fmt.Sscanf(line, `cimstream_session_replays_total{remembered="false"} %g`, &v); err == nil {
			forgotten = int(v)
		}
	}
	return remembered, forgotten
}

// replayCount adds up the replay counters of the instances of a test, each read just before it was
// killed or at the end.
type replayCount struct{ remembered, forgotten int }

func (r *replayCount) add(in *instance) {
	a, b := replays(in)
	r.remembered += max(a, 0)
	r.forgotten += max(b, 0)
}

func (r *replayCount) log(t *testing.T) {
	t.Logf("%s: replays_remembered=%d replays_forgotten=%d (cimstream_session_replays_total, read before each kill and at the end)",
		t.Name(), r.remembered, r.forgotten)
	if r.forgotten > 0 {
		t.Errorf("replays_forgotten=%d: duplicates older than every decision their key held got the current ids "+
			"(docs/inbound.md, \"Replay window\")", r.forgotten)
	}
}

// datePastEnding dates s in the past so that its newest record is at least an hour old.
func datePastEnding(s *script, gap time.Duration) {
	span := time.Duration(0)
	for ci, c := range s.customers {
		d := time.Duration(ci) * time.Second
		for _, m := range c.msgs {
			if m.gap {
				d += gap
			}
			d += time.Minute
		}
		span = max(span, d)
	}
	s.datePast(time.Now().Add(-time.Hour-span).Truncate(time.Minute), gap)
}

// ccmCount is the number of records on the CCM topic now (sum of end offsets).
func ccmCount(t *testing.T, cfg config.Config) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ends, err := endOffsets(ctx, factoryClient(t, cfg), cfg.Topics.CCMInbound)
	if err != nil {
		return -1
	}
	var n int64
	for _, e := range ends {
		n += e
	}
	return n
}

// killAt waits (at most limit) until the CCM topic holds at least want records, then kills in. It says
// how many records there were at the kill.
func killAt(t *testing.T, cfg config.Config, in *instance, want int64, limit time.Duration, rc *replayCount) int64 {
	t.Helper()
	n := ccmCount(t, cfg)
	for deadline := time.Now().Add(limit); n < want && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		n = ccmCount(t, cfg)
	}
	rc.add(in)
	in.kill(t)
	// Nothing moves once the only instance is dead: this is the state at the kill.
	t.Logf("at the kill: %s", pipelineProgress(t, cfg))
	return n
}

// pipelineProgress says how far each stage got: records in, committed by the ingest group, written to
// the repartition topic, committed by the sessions group, written to the CCM topic.
func pipelineProgress(t *testing.T, cfg config.Config) string {
	t.Helper()
	client := factoryClient(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	sum := func(topic string) int64 {
		ends, err := endOffsets(ctx, client, topic)
		if err != nil {
			return -1
		}
		var n int64
		for _, e := range ends {
			n += e
		}
		return n
	}
	in, rep, ccm := sum(cfg.Topics.InboundChannels[0]), sum(cfg.Topics.Repartition), sum(cfg.Topics.CCMInbound)
	// A channel topic is read by the ingest group, or by the sessions group when the fast path takes it.
	channelLag, _ := groupLag(ctx, client, cfg.Topics.InboundChannels, cfg.Kafka.Consumer.GroupID, cfg.Kafka.Consumer.GroupID+".sessions")
	sessionsLag, _ := groupLag(ctx, client, []string{cfg.Topics.Repartition}, cfg.Kafka.Consumer.GroupID+".sessions")
	return fmt.Sprintf("inbound=%d channel_committed=%d repartition=%d sessions_committed=%d ccm=%d", in, in-channelLag, rep, rep-sessionsLag, ccm)
}

// 6. Scripted customers, record time now, cimstream killed twice while the traffic flows.
func TestChaosSessionsKilledDuringSteadyTraffic(t *testing.T) {
	cfg, path := sessionsSetup(t)
	s := newScript(scriptOptions{seed: 6, keyed: 8, unkeyed: 4, conversations: 8 * scale(), maxBody: 4})
	p := sessionsProducer(t, cfg)
	in := start(t, path)
	var rc replayCount
	// About 13 s of traffic; a restart takes several seconds (the killed member holds its partitions
	// until its session times out), so the second kill comes soon after the first restart.
	lp := produceLive(p, s, 350*time.Millisecond)
	for i, share := range []int{20, 60} {
		lp.waitShare(share, time.Minute)
		// Kill just after a round was acknowledged: its records are being processed, not committed.
		lp.waitNext(5 * time.Second)
		time.Sleep(30 * time.Millisecond)
		rc.add(in)
		in.kill(t)
		t.Logf("kill %d: after %d of %d rounds: %s", i+1, lp.sent.Load(), lp.rounds, pipelineProgress(t, cfg))
		if lp.sent.Load() >= int64(lp.rounds) {
			t.Logf("kill %d came after the traffic ended", i+1)
		}
		began := time.Now()
		in = start(t, path)
		t.Logf("restart %d: ready after %v", i+1, time.Since(began).Round(100*time.Millisecond))
	}
	lp.finish(t)
	checkSessions(t, cfg, s, 0)
	rc.add(in)
	rc.log(t)
}

// 6b. The fast path under rebalances: two instances share the traffic (keyed customers taken where
// they are, unkeyed ones on both paths), a third joins mid-stream (every partition moves or is kept),
// and one of the first two is SIGKILLed later. Nothing lost, no divergent duplicate, no split session
// of a keyed customer.
func TestChaosSessionsThirdInstanceJoinsThenOneKilled(t *testing.T) {
	cfg, path := sessionsSetup(t)
	if !cfg.Inbound.FastPath {
		t.Fatal("this test is about the fast path: inbound.fastPath must be on")
	}
	s := newScript(scriptOptions{seed: 9, keyed: 8, unkeyed: 4, conversations: 8 * scale(), maxBody: 4})
	p := sessionsProducer(t, cfg)
	first, second := start(t, path), start(t, path)
	var rc replayCount
	lp := produceLive(p, s, 350*time.Millisecond)
	lp.waitShare(30, time.Minute)
	third := start(t, path)
	t.Logf("third joined after %d of %d rounds: %s", lp.sent.Load(), lp.rounds, pipelineProgress(t, cfg))
	lp.waitShare(60, time.Minute)
	lp.waitNext(5 * time.Second)
	time.Sleep(30 * time.Millisecond)
	rc.add(first)
	first.kill(t)
	t.Logf("first killed after %d of %d rounds: %s", lp.sent.Load(), lp.rounds, pipelineProgress(t, cfg))
	lp.finish(t)
	checkSessions(t, cfg, s, 0)
	rc.add(second)
	rc.add(third)
	rc.log(t)
}

// 7. Scripted customers, record times hours old (with 45-min gaps that end a conversation by
// inactivity in record time), produced as a backlog; cimstream is killed twice while it works through
// it. In a backlog the sessions stage's uncommitted tail at a kill is hundreds of records, many session
// changes of one customer: every replay must still find the decision of its first copy (the
// replays_forgotten line below the account says how many did not).
func TestChaosSessionsKilledDuringBacklog(t *testing.T) {
	cfg, path := sessionsSetup(t)
	const gap = 45 * time.Minute
	s := newScript(scriptOptions{seed: 7, keyed: 24, unkeyed: 8, conversations: 12 * scale(), maxBody: 6, idleGaps: true})
	datePastEnding(s, gap)
	p := sessionsProducer(t, cfg)
	rounds := s.rounds()
	half := len(rounds) / 2
	count := func(rs [][]*scriptMsg) (n int64) {
		for _, r := range rs {
			n += int64(len(r))
		}
		return n
	}
	// The first half of the backlog is there when cimstream starts; it is killed after a fifth of it
	// reached the CCM topic. The second half piles up while it is down; it is killed again as soon as
	// the restarted instance wrote a tenth of it.
	produceRounds(t, p, rounds[:half])
	in := start(t, path)
	var rc replayCount
	n := killAt(t, cfg, in, count(rounds[:half])/5, 60*time.Second, &rc)
	t.Logf("kill 1: seen %d records on the CCM topic, first half of the backlog %d", n, count(rounds[:half]))
	produceRounds(t, p, rounds[half:])
	base := ccmCount(t, cfg)
	in = start(t, path)
	n = killAt(t, cfg, in, base+count(rounds[half:])/10, 60*time.Second, &rc)
	t.Logf("kill 2: seen %d records on the CCM topic, %d before this start, whole backlog %d", n, base, s.count())
	in = start(t, path)
	checkSessions(t, cfg, s, 0)
	rc.add(in)
	rc.log(t)
}

// 8. The same scripted traffic, once live (record time now) and once hours old, produced while
// cimstream was down and processed after a restart, gives exactly the same sessions: messages carry
// their own ids, so the session ids (UUIDv5 of the opening message's id) must be equal, message by
// message.
func TestChaosSessionsBacklogMatchesLive(t *testing.T) {
	opts := scriptOptions{seed: 8, keyed: 8, unkeyed: 4, conversations: 5 * scale(), maxBody: 4, allIDs: true}

	liveCfg, livePath := sessionsSetup(t)
	live := newScript(opts)
	p := sessionsProducer(t, liveCfg)
	in := start(t, livePath)
	produceLive(p, live, 20*time.Millisecond).finish(t)
	liveRes := checkSessions(t, liveCfg, live, 0)
	in.kill(t)

	backCfg, backPath := sessionsSetup(t)
	back := newScript(opts)
	datePastEnding(back, 0)
	bp := sessionsProducer(t, backCfg)
	in = start(t, backPath)
	// An outage: cimstream stops (after it joined and committed nothing yet), the connector's
	// hours-old records pile up, cimstream comes back.
	_ = in.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-in.done:
	case <-time.After(backCfg.Shutdown.Timeout + 10*time.Second):
		t.Fatal("no exit after SIGTERM")
	}
	produceRounds(t, bp, back.rounds())
	start(t, backPath)
	backRes := checkSessions(t, backCfg, back, 0)

	var keyedDiff, unkeyedDiff int
	var examples []string
	for _, c := range live.customers {
		for _, m := range c.msgs {
			a, b := liveRes.first[m.text], backRes.first[m.text]
			if a == nil || b == nil || a.ids == b.ids {
				continue
			}
			if !c.keyed {
				unkeyedDiff++
				continue
			}
			keyedDiff++
			if len(examples) < 5 {
				examples = append(examples, fmt.Sprintf("%s: live %s, backlog %s", m.text, a.ids, b.ids))
			}
		}
	}
	// The CCM's view of each keyed conversation (events and messages, in order) is the same too.
	eventDiff := 0
	for ck, a := range liveRes.lifecycle {
		if b, ok := backRes.lifecycle[ck]; ok && !slices.Equal(a, b) {
			eventDiff++
			if len(examples) < 5 {
				examples = append(examples, fmt.Sprintf("%s conversation %d: live %v, backlog %v", ck.customer, ck.conv, a, b))
			}
		}
	}
	line := fmt.Sprintf("%s: live vs backlog: messages=%d conversations_compared=%d keyed_different_ids=%d keyed_different_lifecycle=%d unkeyed_different_ids=%d",
		t.Name(), live.count(), len(liveRes.lifecycle), keyedDiff, eventDiff, unkeyedDiff)
	t.Log(line)
	if f := os.Getenv("CIMSTREAM_ACCOUNTS_FILE"); f != "" {
		if fh, err := os.OpenFile(f, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644); err == nil {
			fmt.Fprintln(fh, line)
			fh.Close()
		}
	}
	if keyedDiff > 0 || eventDiff > 0 {
		t.Errorf("a keyed customer's backlog got other sessions or events than its live run, e.g.:\n  %s", strings.Join(examples, "\n  "))
	}
	if len(liveRes.lifecycle) == 0 {
		t.Error("no keyed conversation was compared")
	}
}
