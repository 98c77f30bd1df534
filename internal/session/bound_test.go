package session

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
)

// maxID is the largest identifying string the validator lets through by default; '<' makes the
// changelog encoding escape every byte (\u003c), the worst case.
const maxID = 1024

// idCeiling is the largest inbound.maxIdBytes the configuration accepts.
const idCeiling = 2048

func idOf(prefix string, i int) string { return idLen(prefix, i, maxID) }

func idLen(prefix string, i, n int) string {
	s := fmt.Sprint(prefix, i, "-")
	return s + strings.Repeat("<", n-len(s))
}

// bigData is the largest session data the inbound stage keeps: channelData and customer cut down to
// identifying strings at the limit.
func bigData(i int) Data { return dataLen(i, maxID) }

func dataLen(i, n int) Data {
	cd, _ := json.Marshal(map[string]string{"serviceIdentifier": idLen("s", 0, n), "channelCustomerIdentifier": idLen("c", 0, n)})
	cu, _ := json.Marshal(map[string]string{"id": idLen("u", i, n)})
	return Data{ChannelData: cd, Customer: cu}
}

// At the largest configurable bound the cap still holds the current session and the one it closed
// (what a replay of the recent window needs), with a few source partitions: the cap never has to go
// down to the latest decision alone.
func TestCapHoldsTwoSessionsAtTheIdCeiling(t *testing.T) {
	tb := NewTable(Fixed(30 * time.Minute))
	k := Key(idLen("s", 0, idCeiling), idLen("c", 0, idCeiling))
	for i := range 8 {
		m := at(int64(i), idLen("m", i, idCeiling), hoursAgo+int64(i))
		m.Position.Source = fmt.Sprint(strings.Repeat("t", 200), "/", i%4)
		m.ChannelSessionID, m.ConversationID = idLen("cs", i, idCeiling), idLen("cv", i, idCeiling)
		m.Data = dataLen(i, idCeiling)
		out := tb.Apply(k, m, 0)
		if n := len(Encode(out.State)); n > MaxStateBytes {
			t.Fatalf("record %d: %d bytes", i, n)
		}
		if i > 0 && len(out.State.Recent) < 2 {
			t.Fatalf("record %d: only %d decisions kept", i, len(out.State.Recent))
		}
	}
}

// Many sessions of one key with every identifying string at the limit: each changelog value stays under
// the cap, a table restored from the previous value alone (what a restart or a new owner has) decides
// each record exactly as the live table does, and the recent records still replay to the ids they were
// given the first time. The restored table is independent of the live one: were the live table to hold
// more (or other) than it writes, the two would part.
func TestStateStaysUnderItsByteCap(t *testing.T) {
	tb := NewTable(Fixed(30 * time.Minute))
	k := Key(idOf("s", 0), idOf("c", 0))
	var msgs []Message
	var outs []Outcome
	var value []byte // the latest changelog value
	largest := 0
	for i := range 3 * recentLimit {
		m := at(int64(i), idOf("m", i), hoursAgo+int64(i)*1000)
		switch i % 3 {
		case 0:
			m.Intent = "START_CHAT"
		case 1: // ids the message carries are adopted: both at the limit
			m.ChannelSessionID, m.ConversationID = idOf("cs", i), idOf("cv", i)
		}
		m.Data = bigData(i)
		restored := NewTable(Fixed(30 * time.Minute))
		if value != nil {
			if err := restored.Restore(k, value, 0); err != nil {
				t.Fatal(err)
			}
		}
		out, again := tb.Apply(k, m, 0), restored.Apply(k, m, 0)
		msgs, outs = append(msgs, m), append(outs, out)
		if !reflect.DeepEqual(lifecycleOf(out), lifecycleOf(again)) || out.Evicted != again.Evicted {
			t.Fatalf("record %d: the restored table decides %s, the live one %s", i, brief(again), brief(out))
		}
		value = Encode(out.State)
		largest = max(largest, len(value))
		if len(value) > MaxStateBytes {
			t.Fatalf("record %d: the state is %d bytes, over the cap of %d", i, len(value), MaxStateBytes)
		}
		if !bytes.Equal(Encode(again.State), value) {
			t.Fatalf("record %d: the restored table writes another state than the live one", i)
		}
	}
	t.Logf("largest state %d bytes (cap %d)", largest, MaxStateBytes)
	restored := NewTable(Fixed(30 * time.Minute))
	if err := restored.Restore(k, value, 0); err != nil {
		t.Fatal(err)
	}
	// The latest records replay exactly, from the table and from its restore alike.
	for i := len(msgs) - 3; i < len(msgs); i++ {
		for name, table := range map[string]*Table{"table": tb, "restored": restored} {
			again := table.Apply(k, msgs[i], int64(len(msgs)))
			if !again.Replayed || again.Forgotten || again.ChannelSessionID != outs[i].ChannelSessionID ||
				again.ConversationID != outs[i].ConversationID || again.Opened != outs[i].Opened || again.Closed != outs[i].Closed ||
				!sameData(again.Data, outs[i].Data) || !sameData(again.Previous.Data, outs[i].Previous.Data) {
				t.Fatalf("%s: record %d replays as %s, first %s", name, i, brief(again), brief(outs[i]))
			}
		}
	}
}

// The decisions dropped for bytes inside the replay window are counted as evictions, like those
// dropped for their number.
func TestDecisionsDroppedForBytesAreCounted(t *testing.T) {
	tb := NewTable(Fixed(30 * time.Minute)).WithMaxStateBytes(64 << 10)
	k := Key("web", "c")
	evicted := 0
	for i := range 40 {
		m := with(at(int64(i), idOf("m", i), hoursAgo+int64(i)), func(m *Message) { m.Intent = "START_CHAT"; m.Data = bigData(i) })
		out := tb.Apply(k, m, 0)
		evicted += out.Evicted
		if n := len(Encode(out.State)); n > 64<<10 {
			t.Fatalf("record %d: %d bytes over a cap of 64 KiB", i, n)
		}
	}
	if kept := len(tb.Get(k).Recent); evicted != 40-kept || kept < 2 {
		t.Fatalf("kept %d decisions and counted %d evicted of 40", kept, evicted)
	}
}

// An expiry and a passive record add decisions too: the cap holds for them. The replay window is long
// enough that no decision ages out on its own, so only the cap keeps the state small.
func TestExpiryAndPassiveStayUnderTheCap(t *testing.T) {
	const limit = 64 << 10
	tb := NewTable(Fixed(time.Minute)).WithMaxStateBytes(limit).WithReplayWindow(24 * time.Hour)
	k := Key("web", "c")
	expired, passive := 0, 0
	for i := range 40 {
		m := with(at(int64(3*i), idOf("m", i), 0), func(m *Message) { m.Intent = "START_CHAT"; m.Data = bigData(i) })
		tb.Apply(k, m, int64(i)*10*minute)
		for _, c := range tb.expireAt(int64(i)*10*minute + 2*minute) {
			if c.State != nil {
				expired++
				if n := len(Encode(c.State)); n > limit {
					t.Fatalf("expiry %d: %d bytes", i, n)
				}
			}
		}
		// Open again (no trusted time: it continues nothing), then a passive record finds it idle in
		// record time and closes it.
		o := with(at(int64(3*i+1), idOf("o", i), hoursAgo), func(m *Message) { m.Intent = "START_CHAT"; m.Data = bigData(i) })
		tb.Apply(k, o, int64(i)*10*minute+3*minute)
		p := with(at(int64(3*i+2), "n", hoursAgo+2*minute), func(m *Message) { m.Passive = true })
		if out := tb.Apply(k, p, int64(i)*10*minute+4*minute); out.State != nil && out.Closed == ReasonIdle {
			passive++
			if n := len(Encode(out.State)); n > limit {
				t.Fatalf("passive %d: %d bytes", i, n)
			}
		}
	}
	if expired < 30 || passive < 30 {
		t.Fatalf("%d expiries and %d passive closes: the test no longer exercises them", expired, passive)
	}
}

// WithMaxStateBytes bounds a key's encoded state (MaxStateBytes when not set).
func (t *Table) WithMaxStateBytes(n int) *Table {
	t.maxBytes = n
	return t
}
