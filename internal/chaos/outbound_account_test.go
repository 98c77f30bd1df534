package chaos_test

// The outbound half of the fault suite: traffic from the "CCM" on ccm.outbound, and an account of what
// became of each message, counted per message id from outside (kcat reading the topics, never the
// service's metrics): the destinations it reached, its delivery notifications, its dead letters, and the
// order of each customer's messages on every connector topic.

import (
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cimstream/cimstream/internal/config"
	"github.com/cimstream/cimstream/internal/kafkaedge/topics"
	"github.com/cimstream/cimstream/internal/kafkatest"
)

// Outcomes of an outbound message as its notification states them (contract section 4).
const (
	obAccepted  = "ACCEPTED/202"
	obInvalid   = "FAILED/400"
	obNoRoute   = "FAILED/404"
	obWriteFail = "FAILED/500"
)

// obService is a serviceIdentifier with the connector topics its messages go to.
type obService struct {
	id    string
	dests []string
	// gone says the service's (only) connector topic was deleted: its messages must end FAILED/500
	// and dead-lettered with delivery_failed.
	gone bool
}

// obExpect is what must become of one outbound message.
type obExpect struct {
	id       string
	customer string // channelCustomerIdentifier: the key on connector topics
	seq      int    // the message's place among its customer's messages
	status   string // obAccepted, obInvalid or obWriteFail
	dests    []string
	deadCode string // the dead letter's cimstream.error.codes when status is a failure
}

// obTraffic produces outbound messages to ccm.outbound and remembers what must become of each.
type obTraffic struct {
	brokers   []string
	topic     string
	services  []obService
	customers int
	round     int
	invalids  int
	expect    []obExpect
	seq       map[string]int
}

// obWorld configures cimstream for outbound-only traffic: two channels (whatsapp and web, each with its
// connector topic) and, when archive is set, a `continue` route that copies every agent reply to an
// archive topic. It returns the configuration, its file and the traffic generator.
func obWorld(t *testing.T, brokers []string, archive bool, mutate func(*config.Config)) (config.Config, string, *obTraffic) {
	t.Helper()
	prefix := kafkatest.Name(t, "dest") + "."
	var archiveTopic string
	cfg, path := setup(t, brokers, func(c *config.Config) {
		c.Inbound.Enabled = false
		c.Topics.InboundChannels = nil
		c.Outbound.Channels = map[string]string{"wa-41445556677": prefix + "whatsapp", "https://shop.example.com": prefix + "web"}
		if archive {
			archiveTopic = prefix + "qa.archive"
			c.Outbound.Routes = []config.Route{{Name: "agent replies to the archive", SenderType: "AGENT",
				Destinations: []string{archiveTopic}, Continue: true}}
		}
		if mutate != nil {
			mutate(c)
		}
	})
	with := func(topic string) []string {
		if archive {
			return []string{archiveTopic, topic}
		}
		return []string{topic}
	}
	tr := &obTraffic{brokers: cfg.Kafka.Brokers, topic: cfg.Topics.CCMOutbound, seq: map[string]int{}, services: []obService{
		{id: "wa-41445556677", dests: with(topics.OutboundTopic(prefix + "whatsapp"))},
		{id: "https://shop.example.com", dests: with(topics.OutboundTopic(prefix + "web"))},
	}}
	return cfg, path, tr
}

// obMessage is an agent's reply to customer, valid in the outbound direction.
func obMessage(id, service, customer string) string {
	return fmt.Sprintf(`{"id":%q,"header":{"sender":{"id":"agent-1","type":"AGENT","senderName":"Bob"},`+
		`"channelData":{"serviceIdentifier":%q,"channelCustomerIdentifier":%q},"channelSessionId":"s-%s","conversationId":"c-%s",`+
		`"customer":{"_id":%q},"timestamp":1700000000000},"body":{"type":"PLAIN","markdownText":"reply %s"}}`,
		id, service, customer, customer, customer, customer, id)
}

// obBad is an outbound message with an id but without channelData, channelSessionId, conversationId and
// customer: invalid (every violation is `required`).
func obBad(id string) string {
	return fmt.Sprintf(`{"id":%q,"header":{"sender":{"id":"agent-1","type":"AGENT","senderName":"Bob"}},`+
		`"body":{"type":"PLAIN","markdownText":"invalid %s"}}`, id, id)
}

// produce writes rounds of one reply per customer. Customer c always talks through the same service, and
// the CCM keys ccm.outbound by conversation, so each customer's replies are ordered on one partition.
func (tr *obTraffic) produce(t *testing.T, rounds int) {
	t.Helper()
	for r := 0; r < rounds; r++ {
		lines := make([]string, 0, tr.customers)
		for c := 0; c < tr.customers; c++ {
			svc := tr.services[c%len(tr.services)]
			customer := fmt.Sprintf("cust-%d", c)
			id := fmt.Sprintf("m-c%d-r%d", c, tr.round)
			e := obExpect{id: id, customer: customer, seq: tr.seq[customer], status: obAccepted, dests: svc.dests}
			if svc.gone {
				e.status, e.dests, e.deadCode = obWriteFail, nil, "delivery_failed"
			}
			tr.seq[customer]++
			tr.expect = append(tr.expect, e)
			lines = append(lines, "c-"+customer+"\t"+obMessage(id, svc.id, customer))
		}
		kafkatest.KcatProduceTo(t, tr.brokers, tr.topic, true, lines...)
		tr.round++
	}
}

// produceInvalid writes n invalid messages, each with its own id and conversation key.
func (tr *obTraffic) produceInvalid(t *testing.T, n int) []string {
	t.Helper()
	var lines, ids []string
	for i := 0; i < n; i++ {
		id := fmt.Sprintf("bad-%d", tr.invalids)
		tr.invalids++
		ids = append(ids, id)
		tr.expect = append(tr.expect, obExpect{id: id, status: obInvalid, deadCode: "required"})
		lines = append(lines, "c-"+id+"\t"+obBad(id))
	}
	kafkatest.KcatProduceTo(t, tr.brokers, tr.topic, true, lines...)
	return ids
}

// destinations lists every connector topic the traffic may write to.
func (tr *obTraffic) destinations() []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range tr.services {
		for _, d := range s.dests {
			if !seen[d] {
				seen[d] = true
				out = append(out, d)
			}
		}
	}
	sort.Strings(out)
	return out
}

// obNotification is the part of a DELIVERYNOTIFICATION the account reads.
type obNotification struct {
	Body struct {
		Type       string `json:"type"`
		MessageID  string `json:"messageId"`
		Status     string `json:"status"`
		ReasonCode int    `json:"reasonCode"`
	} `json:"body"`
}

// obID is the id of a CIM message value ("" when it has none or is not JSON).
func obID(value string) string {
	var m struct {
		ID string `json:"id"`
	}
	_ = json.Unmarshal([]byte(value), &m)
	return m.ID
}

// obAccountOptions adjust an account.
type obAccountOptions struct {
	// deleted holds connector topics deleted during the test, with what they held before: they are not
	// read again.
	deleted map[string][]kafkatest.KcatRecord
	// wait bounds how long the account waits for every message to be settled (default 30 s).
	wait time.Duration
	// extra is appended to the account line (scenario-specific counts).
	extra string
}

// obResult is the account of one test, per message id.
type obResult struct {
	in                                   int
	byStatus                             map[string]int
	noStatus, twoStatuses, wrongStatus   int
	notifDupSame, notifDupDiff           int
	destRecords, destMissing, destExtra  int
	destDupSame, destDupDiff             int
	dead, deadMissing, deadExtra         int
	deadWrongCode                        int
	deadDupSame, deadDupDiff             int
	orderViolations, wrongKey, unknownID int
	problems                             []string // one sentence per finding, for the failure message
}

// snapshot is one read of every topic the account looks at.
type obSnapshot struct {
	notes map[string][]string                          // message id → notification values, in topic order
	dead  map[string][]kafkatest.KcatRecord            // message id → dead letters
	dest  map[string]map[string][]kafkatest.KcatRecord // topic → message id → records
	raw   map[string][]kafkatest.KcatRecord            // topic → records, in partition and offset order
	other int                                          // records naming no id we sent
}

func (tr *obTraffic) read(t *testing.T, cfg config.Config, opts obAccountOptions) obSnapshot {
	t.Helper()
	known := map[string]bool{}
	for _, e := range tr.expect {
		known[e.id] = true
	}
	all := func([]kafkatest.KcatRecord) bool { return true }
	s := obSnapshot{notes: map[string][]string{}, dead: map[string][]kafkatest.KcatRecord{},
		dest: map[string]map[string][]kafkatest.KcatRecord{}, raw: map[string][]kafkatest.KcatRecord{}}
	notes := kafkatest.KcatConsumeFrom(t, cfg.Kafka.Brokers, cfg.Topics.Notifications, all)
	for _, r := range notes {
		var n obNotification
		if err := json.Unmarshal([]byte(r.Value), &n); err != nil || n.Body.Type != "DELIVERYNOTIFICATION" || !known[n.Body.MessageID] {
			s.other++
			continue
		}
		s.notes[n.Body.MessageID] = append(s.notes[n.Body.MessageID], r.Value)
	}
	dead := kafkatest.KcatConsumeFrom(t, cfg.Kafka.Brokers, cfg.Topics.DeadLetter, all)
	for _, r := range dead {
		id := obID(r.Value)
		if !known[id] {
			s.other++
			continue
		}
		s.dead[id] = append(s.dead[id], r)
	}
	for _, topic := range tr.destinations() {
		recs, gone := opts.deleted[topic]
		if !gone {
			recs = kafkatest.KcatConsumeFrom(t, cfg.Kafka.Brokers, topic, all)
		}
		sort.SliceStable(recs, func(i, j int) bool {
			if recs[i].Partition != recs[j].Partition {
				return recs[i].Partition < recs[j].Partition
			}
			return recs[i].Offset < recs[j].Offset
		})
		s.raw[topic] = recs
		s.dest[topic] = map[string][]kafkatest.KcatRecord{}
		for _, r := range recs {
			id := obID(r.Value)
			if !known[id] {
				s.other++
				continue
			}
			s.dest[topic][id] = append(s.dest[topic][id], r)
		}
	}
	return s
}

// settled says whether every message reached a state the account can judge: it has a notification, a
// failure has its dead letter, and an acceptance reached every destination.
func (tr *obTraffic) settled(s obSnapshot) bool {
	for _, e := range tr.expect {
		notes := s.notes[e.id]
		if len(notes) == 0 {
			return false
		}
		switch st := obStatusOf(notes[0]); {
		case st == obAccepted:
			for _, d := range e.dests {
				if len(s.dest[d][e.id]) == 0 {
					return false
				}
			}
		case strings.HasPrefix(st, "FAILED/"):
			if len(s.dead[e.id]) == 0 {
				return false
			}
		}
	}
	return true
}

func obStatusOf(value string) string {
	var n obNotification
	_ = json.Unmarshal([]byte(value), &n)
	return n.Body.Status + "/" + strconv.Itoa(n.Body.ReasonCode)
}

// account waits (bounded) until every message is settled, then counts, per message id, its destinations,
// notifications and dead letters and each customer's order on every connector topic; it prints the
// account line and fails the test with one sentence per finding unless the contract holds:
//   - exactly one final status per message, the expected one; duplicates byte-identical;
//   - an ACCEPTED message reached every destination of its route, and no other;
//   - a FAILED message has a dead letter with the expected code, an ACCEPTED one none; duplicates of
//     destination records and dead letters byte-identical;
//   - each customer's messages are in order on every connector topic (first copies; a redelivered run
//     after a crash may repeat earlier ones).
func (tr *obTraffic) account(t *testing.T, cfg config.Config, opts obAccountOptions) obResult {
	t.Helper()
	if opts.wait == 0 {
		opts.wait = 30 * time.Second
	}
	var s obSnapshot
	for deadline := time.Now().Add(opts.wait); ; time.Sleep(500 * time.Millisecond) {
		s = tr.read(t, cfg, opts)
		if tr.settled(s) || time.Now().After(deadline) {
			break
		}
	}
	res := obResult{in: len(tr.expect), byStatus: map[string]int{}, unknownID: s.other}
	problem := func(format string, args ...any) { res.problems = append(res.problems, fmt.Sprintf(format, args...)) }
	for _, e := range tr.expect {
		// Notifications: exactly one final status, the expected one, duplicates byte-identical.
		statuses := map[string]string{} // status → first copy
		var order []string
		for _, v := range s.notes[e.id] {
			st := obStatusOf(v)
			first, seen := statuses[st]
			switch {
			case !seen:
				statuses[st] = v
				order = append(order, st)
			case first == v:
				res.notifDupSame++
			default:
				res.notifDupDiff++
				problem("%s: two different %s notifications:\n  %s\n  %s", e.id, st, first, v)
			}
		}
		final := ""
		switch len(order) {
		case 0:
			res.noStatus++
			problem("%s: no notification (want %s)", e.id, e.status)
		case 1:
			final = order[0]
			res.byStatus[final]++
			if final != e.status {
				res.wrongStatus++
				why := ""
				if d := s.dead[e.id]; len(d) > 0 {
					why = " (its dead letter says: " + d[0].Headers["cimstream.error.detail"] + ")"
				}
				problem("%s: notified %s, want %s%s", e.id, final, e.status, why)
			}
		default:
			final = order[0]
			res.byStatus[final]++
			res.twoStatuses++
			problem("%s: %d final statuses %v, want exactly one (%s)", e.id, len(order), order, e.status)
		}
		// Destinations: an accepted message reached each of its destinations; nothing reached a topic
		// that is not one of them.
		want := map[string]bool{}
		for _, d := range e.dests {
			want[d] = true
		}
		for _, topic := range tr.destinations() {
			recs := s.dest[topic][e.id]
			if len(recs) == 0 {
				if want[topic] && final == obAccepted {
					res.destMissing++
					problem("%s: notified ACCEPTED but never reached %s", e.id, topic)
				}
				continue
			}
			if !want[topic] && final != obWriteFail { // a failed fan-out may have reached part of its route
				res.destExtra++
				problem("%s: reached %s, which is not one of its destinations %v", e.id, topic, e.dests)
			}
			for _, r := range recs[1:] {
				if r.Value == recs[0].Value && r.Key == recs[0].Key {
					res.destDupSame++
				} else {
					res.destDupDiff++
					problem("%s: two different copies on %s:\n  %q %s\n  %q %s", e.id, topic, recs[0].Key, recs[0].Value, r.Key, r.Value)
				}
			}
		}
		// Dead letters: one for a failure, with its code; none for an acceptance.
		dead := s.dead[e.id]
		res.dead += len(dead)
		failed := strings.HasPrefix(final, "FAILED/") || (final == "" && e.status != obAccepted)
		switch {
		case failed && len(dead) == 0:
			res.deadMissing++
			problem("%s: %s but no dead letter on %s", e.id, orWant(final, e.status), cfg.Topics.DeadLetter)
		case !failed && len(dead) > 0:
			res.deadExtra++
			problem("%s: %s yet dead-lettered (%s)", e.id, orWant(final, e.status), dead[0].Headers["cimstream.error.codes"])
		}
		if len(dead) > 0 {
			wantCode := e.deadCode
			if final == obWriteFail {
				wantCode = "delivery_failed"
			} else if final == obInvalid {
				wantCode = "required"
			}
			if got := dead[0].Headers["cimstream.error.codes"]; wantCode != "" && got != wantCode {
				res.deadWrongCode++
				problem("%s: dead letter with codes %q, want %q", e.id, got, wantCode)
			}
			for _, d := range dead[1:] {
				if d.Value == dead[0].Value && d.Key == dead[0].Key && obSameHeaders(d.Headers, dead[0].Headers) {
					res.deadDupSame++
				} else {
					res.deadDupDiff++
					problem("%s: two different dead letters: %v / %v", e.id, dead[0].Headers, d.Headers)
				}
			}
		}
	}
	// Order: per connector topic and customer, first copies in the customer's sequence, each under the
	// customer's key.
	seqOf := map[string]obExpect{}
	for _, e := range tr.expect {
		seqOf[e.id] = e
	}
	for _, topic := range tr.destinations() {
		res.destRecords += len(s.raw[topic])
		seen := map[string]bool{}
		last := map[string]int{}
		for _, r := range s.raw[topic] {
			e, ok := seqOf[obID(r.Value)]
			if !ok || seen[e.id] {
				continue
			}
			seen[e.id] = true
			if r.Key != e.customer {
				res.wrongKey++
				problem("%s on %s: key %q, want the channelCustomerIdentifier %q", e.id, topic, r.Key, e.customer)
			}
			if prev, ok := last[e.customer]; ok && e.seq < prev {
				res.orderViolations++
				problem("%s: %s's message #%d arrived after #%d (partition %d offset %d)", topic, e.customer, e.seq, prev, r.Partition, r.Offset)
			}
			last[e.customer] = max(last[e.customer], e.seq)
		}
	}
	if res.unknownID > 0 {
		problem("%d records on the notification, dead-letter or connector topics name no message this test sent", res.unknownID)
	}
	line := fmt.Sprintf("%s: in=%d accepted=%d failed_400=%d failed_404=%d failed_500=%d no_status=%d two_statuses=%d wrong_status=%d "+
		"notif_dup_identical=%d notif_dup_different=%d dest_records=%d dest_missing=%d dest_unexpected=%d dest_dup_identical=%d "+
		"dest_dup_different=%d dead=%d dead_missing=%d dead_unexpected=%d dead_wrong_code=%d dead_dup_identical=%d dead_dup_different=%d "+
		"order_violations=%d wrong_key=%d unknown=%d",
		t.Name(), res.in, res.byStatus[obAccepted], res.byStatus[obInvalid], res.byStatus[obNoRoute], res.byStatus[obWriteFail],
		res.noStatus, res.twoStatuses, res.wrongStatus, res.notifDupSame, res.notifDupDiff, res.destRecords, res.destMissing,
		res.destExtra, res.destDupSame, res.destDupDiff, res.dead, res.deadMissing, res.deadExtra, res.deadWrongCode,
		res.deadDupSame, res.deadDupDiff, res.orderViolations, res.wrongKey, res.unknownID)
	if opts.extra != "" {
		line += " " + opts.extra
	}
	t.Log(line)
	if f := os.Getenv("CIMSTREAM_ACCOUNTS_FILE"); f != "" {
		if fh, err := os.OpenFile(f, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644); err == nil {
			fmt.Fprintln(fh, line)
			fh.Close()
		}
	}
	if len(res.problems) > 0 {
		shown := res.problems
		if len(shown) > 15 {
			shown = append(shown[:15:15], fmt.Sprintf("... and %d more", len(res.problems)-15))
		}
		t.Errorf("the outbound contract does not hold (%d findings):\n%s", len(res.problems), strings.Join(shown, "\n"))
	}
	return res
}

func orWant(final, want string) string {
	if final == "" {
		return "not notified (want " + want + ")"
	}
	return final
}

func obSameHeaders(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}
