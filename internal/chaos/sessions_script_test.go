package chaos_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/cimstream/cimstream/internal/config"
	"github.com/cimstream/cimstream/internal/kafkaclient"
)

// A script is the traffic of scripted customers: each one sends conversations separated by the
// boundaries of contract section 3 (START_CHAT / START_CONVERSATION open a new session, END_CHAT closes
// the current one after it; optionally a gap longer than the idle timeout in record time), so the
// conversation every message belongs to is known before anything is sent. The checker (sessions_account)
// compares the ids cimstream gave with that.
type script struct {
	customers []*scriptCustomer
}

type scriptCustomer struct {
	name  string // channelCustomerIdentifier
	keyed bool   // records keyed by the customer; otherwise no key, spread over partitions
	ids   bool   // messages carry their own id; otherwise cimstream derives one
	msgs  []*scriptMsg
}

type scriptMsg struct {
	customer *scriptCustomer
	seq      int    // send order within the customer
	conv     int    // scripted conversation within the customer
	intent   string // header.intent, or ""
	text     string // body.markdownText, unique in the script
	id       string // explicit id, or ""
	gap      bool   // preceded by a gap longer than the idle timeout (record time)
	// at is the record timestamp the message is produced with. Backlog scripts fix it in advance;
	// live ones stamp it when the message is produced.
	at time.Time
}

// scriptOptions shape a script. Everything is derived from seed, so two scripts with the same options
// are the same traffic (the backlog test sends one twice).
type scriptOptions struct {
	seed          uint64
	keyed         int // customers keyed by channelCustomerIdentifier
	unkeyed       int // customers without a key
	conversations int // per customer
	maxBody       int // plain messages per conversation: 1..maxBody
	// idleGaps lets a conversation start by inactivity alone: a gap longer than the idle timeout in
	// record time (its length is given when the script is dated) and no START_* intent. Only
	// meaningful with past record times (a backlog).
	idleGaps bool
	// ids: every other customer carries explicit message ids (all of them when allIDs).
	allIDs bool
}

func newScript(o scriptOptions) *script {
	rng := rand.New(rand.NewPCG(o.seed, 0x5e551045))
	s := &script{}
	add := func(name string, keyed bool, n int) {
		c := &scriptCustomer{name: name, keyed: keyed, ids: o.allIDs || n%2 == 1}
		conv := 0
		ended := true // nothing open before the first message
		for k := 0; k < o.conversations; k++ {
			// How this conversation opens. After END_CHAT (or at the very start) a plain message opens
			// it; otherwise it needs START_CHAT, START_CONVERSATION or an idle gap.
			opener := []string{"START_CHAT", "START_CONVERSATION", "", "gap"}[rng.IntN(4)]
			if opener == "gap" && (!o.idleGaps || k == 0) {
				opener = "START_CHAT"
			}
			if opener == "" && !ended {
				opener = "START_CONVERSATION"
			}
			if k > 0 {
				conv++
			}
			first := true
			emit := func(intent string) {
				m := &scriptMsg{customer: c, seq: len(c.msgs), conv: conv, intent: intent}
				m.text = fmt.Sprintf("%s-m%03d-conv%d", c.name, m.seq, conv)
				if intent != "" {
					m.text += "-" + intent
				}
				if c.ids {
					m.id = fmt.Sprintf("id-%s-%03d", c.name, m.seq)
				}
				m.gap = first && opener == "gap"
				first = false
				c.msgs = append(c.msgs, m)
			}
			switch opener {
			case "START_CHAT", "START_CONVERSATION":
				emit(opener)
			}
			for b := 1 + rng.IntN(o.maxBody); b > 0; b-- {
				emit("")
			}
			ended = rng.IntN(10) < 6
			if ended {
				emit("END_CHAT")
			}
		}
		s.customers = append(s.customers, c)
	}
	for i := 0; i < o.keyed; i++ {
		add(fmt.Sprintf("k%d", i), true, i)
	}
	for i := 0; i < o.unkeyed; i++ {
		add(fmt.Sprintf("u%d", i), false, i)
	}
	return s
}

// datePast gives every message a record time in the past: customer c's messages start at base plus
// c seconds, one minute apart (plus the gap where the script has one), increasing per customer.
func (s *script) datePast(base time.Time, gap time.Duration) {
	for ci, c := range s.customers {
		at := base.Add(time.Duration(ci) * time.Second)
		for _, m := range c.msgs {
			if m.gap {
				at = at.Add(gap)
			}
			m.at = at.Truncate(time.Millisecond)
			at = at.Add(time.Minute)
		}
	}
}

func (s *script) count() int {
	n := 0
	for _, c := range s.customers {
		n += len(c.msgs)
	}
	return n
}

// rounds returns the messages in send order: round r holds message r of every customer that has one.
func (s *script) rounds() [][]*scriptMsg {
	var out [][]*scriptMsg
	for r := 0; ; r++ {
		var round []*scriptMsg
		for _, c := range s.customers {
			if r < len(c.msgs) {
				round = append(round, c.msgs[r])
			}
		}
		if len(round) == 0 {
			return out
		}
		out = append(out, round)
	}
}

// value is the CIM message of m, as a web connector would send it (no header.timestamp: cimstream
// fills it from the record time).
func (m *scriptMsg) value() []byte {
	header := map[string]any{
		"sender":      map[string]any{"id": "w", "type": "CONNECTOR", "senderName": "W"},
		"channelData": map[string]any{"serviceIdentifier": "web", "channelCustomerIdentifier": m.customer.name},
	}
	if m.intent != "" {
		header["intent"] = m.intent
	}
	msg := map[string]any{"header": header, "body": map[string]any{"type": "PLAIN", "markdownText": m.text}}
	if m.id != "" {
		msg["id"] = m.id
	}
	b, _ := json.Marshal(msg)
	return b
}

// scriptProducer writes script messages with explicit record timestamps (kcat -P cannot set one),
// acks=all. Keyed customers' records are keyed by channelCustomerIdentifier (Murmur2, as a Java
// connector would); unkeyed ones go round-robin over the partitions, so one customer's messages are
// spread over all of them.
type scriptProducer struct {
	w  *kafka.Writer
	rr atomic.Int64
}

func newScriptProducer(cfg config.Config, topic string) (*scriptProducer, error) {
	f, err := kafkaclient.New(cfg.Kafka)
	if err != nil {
		return nil, err
	}
	p := &scriptProducer{w: f.Writer(topic)}
	murmur := &kafka.Murmur2Balancer{Consistent: true}
	p.w.Balancer = kafka.BalancerFunc(func(m kafka.Message, partitions ...int) int {
		if m.Key == nil {
			return partitions[int(p.rr.Add(1))%len(partitions)]
		}
		return murmur.Balance(m, partitions...)
	})
	return p, nil
}

// send produces msgs in order; a message without a record time is stamped now.
func (p *scriptProducer) send(ctx context.Context, msgs []*scriptMsg) error {
	now := time.Now().Truncate(time.Millisecond)
	var out []kafka.Message
	for _, m := range msgs {
		if m.at.IsZero() {
			m.at = now
		}
		km := kafka.Message{Value: m.value(), Time: m.at}
		if m.customer.keyed {
			km.Key = []byte(m.customer.name)
		}
		out = append(out, km)
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return p.w.WriteMessages(ctx, out...)
}

func (p *scriptProducer) close() { _ = p.w.Close() }
