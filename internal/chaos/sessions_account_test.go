package chaos_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/cimstream/cimstream/internal/config"
	"github.com/cimstream/cimstream/internal/inbound"
	"github.com/cimstream/cimstream/internal/kafkaclient"
	"github.com/cimstream/cimstream/internal/kafkatest"
)

// The session checker. Given the script that was sent, it reads the CCM topic and counts, per kind of
// customer (keyed, unkeyed):
//
//   - split: a scripted conversation (the messages between two boundaries) whose messages got more than
//     one channelSessionId/conversationId pair;
//   - merge: a conversationId given to messages of more than one scripted conversation (the count is the
//     number of extra conversations folded into one id);
//   - order: per customer and CCM partition, the first copies of its messages are not in send order
//     (counted per inversion). Output is keyed by conversationId, so two conversations of one customer
//     may sit on different partitions, which have no common order to read; on one partition they do;
//   - dup_different: two records with the same message id and different bytes (contract section 5:
//     a duplicate is byte-identical to the first copy);
//   - no_ids: a scripted message that reached the CCM without channelSessionId or conversationId;
//   - ambiguous: a scripted message with copies on two CCM partitions (a divergent duplicate with
//     another conversationId): which copy came first cannot be told, so it is left out of split,
//     merge and order and shows as dup_different.
//
// It also checks that header.timestamp equals the record time the message was produced with
// (time_mismatch), which is what makes the hours-old scripts hours old for the service.
//
// It fails on anything lost, on any split, merge, order, divergent duplicate or no_ids of keyed
// customers (and of records outside the script), on a merge across two customers and on any time
// mismatch. Unkeyed customers' counts are printed with examples but not failed: records a connector
// spreads over several partitions have no order to keep (docs/inbound.md), so a START_CHAT can overtake
// the messages before it, and a replay decided anew can see another order than the first time.
//
// Reading goes on after every text was seen: until both consumer groups have committed the end of their
// input and the CCM topic stopped growing (at most settleLimit), so duplicates written by a restarted
// instance after the last new text are counted too.

const (
	arrivalLimit = 90 * time.Second
	settleLimit  = 30 * time.Second
)

type outRecord struct {
	kafkatest.KcatRecord
	event, reason      string // a session lifecycle event and its reasonCode; "" for a message
	id, text, customer string
	ids                string // channelSessionId/conversationId
	conversationID     string
	timestamp          int64
}

type convKey struct {
	customer string
	conv     int
}

// tally is one kind of customer's counts.
type tally struct {
	customers, conversations                      int
	split, merge, order, dupDifferent, noIDs      int
	ambiguous                                     int
	splitDetail, mergeDetail, orderDetail, noIDEx []string
}

func (c *tally) String() string {
	return fmt.Sprintf("customers=%d conversations=%d split=%d merge=%d order=%d dup_different=%d no_ids=%d ambiguous=%d",
		c.customers, c.conversations, c.split, c.merge, c.order, c.dupDifferent, c.noIDs, c.ambiguous)
}

// sessionsResult is what a check saw.
type sessionsResult struct {
	line         string
	dupIdentical int
	// first is each scripted text's first copy on the CCM topic.
	first map[string]*outRecord
	// lifecycle is each keyed scripted conversation's view on the CCM topic: its events and messages,
	// first copies in partition order ("STARTED", "text", "ENDED/END_CHAT"...).
	lifecycle map[convKey][]string
}

// checkSessions reads the CCM and dead-letter topics of cfg, prints and records the account line, and
// fails the test as described above. extraIn counts inputs outside the script (hostile records).
func checkSessions(t *testing.T, cfg config.Config, s *script, extraIn int) *sessionsResult {
	t.Helper()
	byText := map[string]*scriptMsg{}
	for _, c := range s.customers {
		for _, m := range c.msgs {
			byText[m.text] = m
		}
	}
	read := func() []*outRecord {
		recs := kafkatest.KcatConsumeFrom(t, cfg.Kafka.Brokers, cfg.Topics.CCMInbound, func([]kafkatest.KcatRecord) bool { return true })
		out := make([]*outRecord, 0, len(recs))
		for _, r := range recs {
			out = append(out, parseOut(r))
		}
		sort.SliceStable(out, func(i, j int) bool {
			if out[i].Partition != out[j].Partition {
				return out[i].Partition < out[j].Partition
			}
			return out[i].Offset < out[j].Offset
		})
		return out
	}
	allSeen := func(outs []*outRecord) bool {
		seen := map[string]bool{}
		for _, o := range outs {
			if byText[o.text] != nil {
				seen[o.text] = true
			}
		}
		return len(seen) == len(byText)
	}

	var outs []*outRecord
	for deadline := time.Now().Add(arrivalLimit); ; time.Sleep(500 * time.Millisecond) {
		outs = read()
		if allSeen(outs) || time.Now().After(deadline) {
			break
		}
	}
	settled := allSeen(outs) && settle(t, cfg)
	if settled {
		outs = read()
	}
	dead := kafkatest.KcatConsumeFrom(t, cfg.Kafka.Brokers, cfg.Topics.DeadLetter, func([]kafkatest.KcatRecord) bool { return true })

	res := &sessionsResult{first: map[string]*outRecord{}, lifecycle: map[convKey][]string{}}
	keyed, unkeyed := &tally{}, &tally{}
	kind := func(customer string) *tally {
		for _, c := range s.customers {
			if c.name == customer && !c.keyed {
				return unkeyed
			}
		}
		return keyed
	}
	for _, c := range s.customers {
		k := kind(c.name)
		k.customers++
		if len(c.msgs) > 0 {
			k.conversations += c.msgs[len(c.msgs)-1].conv + 1
		}
	}

	// Duplicates: by message id, over every record (lifecycle events and unscripted records too).
	byID := map[string]*outRecord{}
	var keyedDupEx, unkeyedDupEx []string
	for _, o := range outs {
		key := o.id
		if key == "" {
			key = "text:" + o.text
		}
		prev, ok := byID[key]
		if !ok {
			byID[key] = o
			continue
		}
		if prev.Value == o.Value {
			res.dupIdentical++
			continue
		}
		k := kind(o.customer)
		k.dupDifferent++
		ex := &keyedDupEx
		if k == unkeyed {
			ex = &unkeyedDupEx
		}
		if len(*ex) < 5 {
			*ex = append(*ex, fmt.Sprintf("id %s (text %q):\n  p%d@%d (from %s) %s\n  p%d@%d (from %s) %s",
				o.id, o.text, prev.Partition, prev.Offset, sourceOf(prev), prev.Value, o.Partition, o.Offset, sourceOf(o), o.Value))
		}
	}

	// First copies of the scripted messages. Copies on two partitions (a divergent duplicate with
	// another conversationId) have no order to tell which came first: such a message is left out of
	// split, merge and order (it is counted as dup_different and as ambiguous).
	seenAt := map[string]int{}
	ambiguous := map[string]bool{}
	for _, o := range outs {
		if byText[o.text] == nil {
			continue
		}
		if p, ok := seenAt[o.text]; !ok {
			seenAt[o.text] = o.Partition
			res.first[o.text] = o
		} else if p != o.Partition {
			ambiguous[o.text] = true
		}
	}
	for tx := range ambiguous {
		kind(byText[tx].customer.name).ambiguous++
		delete(res.first, tx)
	}
	lost, timeMismatch := 0, 0
	var lostEx, timeEx []string
	convIDs := map[convKey]map[string][]string{} // scripted conversation → ids pair → texts
	owners := map[string]map[convKey]bool{}      // conversationId → scripted conversations
	for _, c := range s.customers {
		for _, m := range c.msgs {
			o := res.first[m.text]
			if ambiguous[m.text] {
				continue
			}
			if o == nil {
				lost++
				if len(lostEx) < 5 {
					lostEx = append(lostEx, m.text)
				}
				continue
			}
			if !m.at.IsZero() && o.timestamp != m.at.UnixMilli() {
				timeMismatch++
				if len(timeEx) < 5 {
					timeEx = append(timeEx, fmt.Sprintf("%s: header.timestamp %d, record time %d", m.text, o.timestamp, m.at.UnixMilli()))
				}
			}
			if o.ids == "/" || o.conversationID == "" || strings.HasPrefix(o.ids, "/") {
				k := kind(c.name)
				k.noIDs++
				if len(k.noIDEx) < 5 {
					k.noIDEx = append(k.noIDEx, m.text)
				}
				continue
			}
			ck := convKey{c.name, m.conv}
			if convIDs[ck] == nil {
				convIDs[ck] = map[string][]string{}
			}
			convIDs[ck][o.ids] = append(convIDs[ck][o.ids], m.text)
			if owners[o.conversationID] == nil {
				owners[o.conversationID] = map[convKey]bool{}
			}
			owners[o.conversationID][ck] = true
		}
	}
	keys := make([]convKey, 0, len(convIDs))
	for ck := range convIDs {
		keys = append(keys, ck)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].customer != keys[j].customer {
			return keys[i].customer < keys[j].customer
		}
		return keys[i].conv < keys[j].conv
	})
	for _, ck := range keys {
		if pairs := convIDs[ck]; len(pairs) > 1 {
			k := kind(ck.customer)
			k.split++
			if len(k.splitDetail) < 5 {
				var parts []string
				for ids, texts := range pairs {
					parts = append(parts, fmt.Sprintf("%s %v", ids, texts))
				}
				sort.Strings(parts)
				k.splitDetail = append(k.splitDetail, fmt.Sprintf("%s conversation %d got %d id pairs: %s", ck.customer, ck.conv, len(pairs), strings.Join(parts, "; ")))
			}
		}
	}
	crossCustomer := 0
	convIDList := make([]string, 0, len(owners))
	for id := range owners {
		convIDList = append(convIDList, id)
	}
	sort.Strings(convIDList)
	for _, id := range convIDList {
		set := owners[id]
		if len(set) < 2 {
			continue
		}
		var names []string
		customers := map[string]bool{}
		k := unkeyed
		for ck := range set {
			names = append(names, fmt.Sprintf("%s/conv%d", ck.customer, ck.conv))
			customers[ck.customer] = true
			if kind(ck.customer) == keyed {
				k = keyed
			}
		}
		if len(customers) > 1 {
			crossCustomer++
			k = keyed // no documented limit lets two customers share a conversation
		}
		sort.Strings(names)
		k.merge += len(set) - 1
		if len(k.mergeDetail) < 5 {
			k.mergeDetail = append(k.mergeDetail, fmt.Sprintf("conversationId %s holds %v", id, names))
		}
	}
	// Order: per customer and CCM partition, first copies in offset order must follow the send order.
	for _, c := range s.customers {
		k := kind(c.name)
		perPartition := map[int][]*outRecord{}
		for _, m := range c.msgs {
			if o := res.first[m.text]; o != nil {
				perPartition[o.Partition] = append(perPartition[o.Partition], o)
			}
		}
		for p, list := range perPartition {
			sort.Slice(list, func(i, j int) bool { return list[i].Offset < list[j].Offset })
			for i := 1; i < len(list); i++ {
				a, b := byText[list[i-1].text], byText[list[i].text]
				if a.seq > b.seq {
					k.order++
					if len(k.orderDetail) < 5 {
						k.orderDetail = append(k.orderDetail, fmt.Sprintf("%s on partition %d: %s (offset %d) before %s (offset %d)",
							c.name, p, a.text, list[i-1].Offset, b.text, list[i].Offset))
					}
				}
			}
		}
	}

	eventsMissing, eventsOrder, eventEx := checkLifecycle(s, outs, res, owners, kind, keyed)

	res.line = fmt.Sprintf("%s: in=%d out=%d dead=%d lost=%d dup_identical=%d settled=%v time_mismatch=%d events_missing=%d events_order=%d | keyed %v | unkeyed %v",
		t.Name(), s.count()+extraIn, len(outs), len(dead), lost, res.dupIdentical, settled, timeMismatch, eventsMissing, eventsOrder, keyed, unkeyed)
	t.Log(res.line)
	if f := os.Getenv("CIMSTREAM_ACCOUNTS_FILE"); f != "" {
		if fh, err := os.OpenFile(f, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644); err == nil {
			fmt.Fprintln(fh, res.line)
			fh.Close()
		}
	}
	report := func(what string, list []string) {
		if len(list) > 0 {
			t.Logf("%s (first %d):\n  %s", what, len(list), strings.Join(list, "\n  "))
		}
	}
	report("unkeyed splits, not failed (a customer spread over partitions has no order)", unkeyed.splitDetail)
	report("unkeyed merges, not failed (same reason)", unkeyed.mergeDetail)
	report("unkeyed order, not failed (same reason)", unkeyed.orderDetail)
	report("unkeyed messages without ids, not failed (same reason)", unkeyed.noIDEx)

	var fails []string
	fail := func(n int, what string, examples []string) {
		if n > 0 {
			fails = append(fails, fmt.Sprintf("%s=%d", what, n))
			if len(examples) > 0 {
				t.Errorf("%s=%d, e.g.:\n  %s", what, n, strings.Join(examples, "\n  "))
			}
		}
	}
	fail(lost, "lost", lostEx)
	fail(timeMismatch, "time_mismatch", timeEx)
	fail(keyed.split, "keyed split", keyed.splitDetail)
	fail(keyed.merge, "keyed merge", keyed.mergeDetail)
	fail(keyed.order, "keyed order", keyed.orderDetail)
	fail(keyed.noIDs, "keyed no_ids", keyed.noIDEx)
	fail(keyed.dupDifferent, "keyed dup_different", keyedDupEx)
	fail(eventsMissing, "keyed events_missing", eventEx)
	fail(eventsOrder, "keyed events_order", eventEx)
	report("unkeyed divergent duplicates, not failed (a customer spread over partitions has no order, so a replay that is decided anew can decide otherwise)", unkeyedDupEx)
	if crossCustomer > 0 {
		fails = append(fails, fmt.Sprintf("merges across customers=%d", crossCustomer))
	}
	if len(fails) > 0 {
		t.Errorf("%s: must all be 0\n%s", strings.Join(fails, " "), res.line)
	}
	return res
}

func parseOut(r kafkatest.KcatRecord) *outRecord {
	var m struct {
		ID     string `json:"id"`
		Header struct {
			ChannelData struct {
				ChannelCustomerIdentifier string `json:"channelCustomerIdentifier"`
			} `json:"channelData"`
			ChannelSessionID string `json:"channelSessionId"`
			ConversationID   string `json:"conversationId"`
			Timestamp        int64  `json:"timestamp"`
		} `json:"header"`
		Body struct {
			MarkdownText     string `json:"markdownText"`
			NotificationData struct {
				ReasonCode string `json:"reasonCode"`
			} `json:"notificationData"`
		} `json:"body"`
	}
	_ = json.Unmarshal([]byte(r.Value), &m)
	return &outRecord{
		KcatRecord:     r,
		event:          r.Headers[inbound.HeaderEvent],
		reason:         m.Body.NotificationData.ReasonCode,
		id:             m.ID,
		text:           m.Body.MarkdownText,
		customer:       m.Header.ChannelData.ChannelCustomerIdentifier,
		ids:            m.Header.ChannelSessionID + "/" + m.Header.ConversationID,
		conversationID: m.Header.ConversationID,
		timestamp:      m.Header.Timestamp,
	}
}

// settle waits (at most settleLimit) until both consumer groups have committed the end of their input
// topics and the CCM topic's end offsets stayed the same for a second: then every record cimstream will
// write for this input, late duplicates included, is on the CCM topic.
func settle(t *testing.T, cfg config.Config) bool {
	t.Helper()
	client := factoryClient(t, cfg)
	lastCCM, stableSince := int64(-1), time.Time{}
	for deadline := time.Now().Add(settleLimit); time.Now().Before(deadline); time.Sleep(250 * time.Millisecond) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		// A channel topic is committed by the ingest group, or by the sessions group when the fast path
		// takes it.
		ingestLag, err1 := groupLag(ctx, client, cfg.Topics.InboundChannels, cfg.Kafka.Consumer.GroupID, cfg.Kafka.Consumer.GroupID+".sessions")
		sessionsLag, err2 := groupLag(ctx, client, []string{cfg.Topics.Repartition}, cfg.Kafka.Consumer.GroupID+".sessions")
		ccm, err3 := endOffsets(ctx, client, cfg.Topics.CCMInbound)
		cancel()
		if err1 != nil || err2 != nil || err3 != nil || ingestLag != 0 || sessionsLag != 0 {
			lastCCM, stableSince = -1, time.Time{}
			continue
		}
		var total int64
		for _, e := range ccm {
			total += e
		}
		if total != lastCCM {
			lastCCM, stableSince = total, time.Now()
			continue
		}
		if time.Since(stableSince) >= time.Second {
			return true
		}
	}
	t.Logf("not settled within %v: a consumer group still lags or the CCM topic still grows", settleLimit)
	return false
}

func partitionsOf(ctx context.Context, client *kafka.Client, topics []string) (map[string][]int, error) {
	md, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: topics})
	if err != nil {
		return nil, err
	}
	out := map[string][]int{}
	for _, tp := range md.Topics {
		if tp.Error != nil {
			return nil, tp.Error
		}
		for _, p := range tp.Partitions {
			out[tp.Name] = append(out[tp.Name], p.ID)
		}
	}
	return out, nil
}

func endOffsets(ctx context.Context, client *kafka.Client, topic string) (map[int]int64, error) {
	parts, err := partitionsOf(ctx, client, []string{topic})
	if err != nil {
		return nil, err
	}
	req := &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{}}
	for _, p := range parts[topic] {
		req.Topics[topic] = append(req.Topics[topic], kafka.LastOffsetOf(p))
	}
	resp, err := client.ListOffsets(ctx, req)
	if err != nil {
		return nil, err
	}
	out := map[int]int64{}
	for _, po := range resp.Topics[topic] {
		if po.Error != nil {
			return nil, po.Error
		}
		out[po.Partition] = po.LastOffset
	}
	return out, nil
}

// groupLag is the number of records of topics that group has not committed.
func groupLag(ctx context.Context, client *kafka.Client, topics []string, groups ...string) (int64, error) {
	parts, err := partitionsOf(ctx, client, topics)
	if err != nil {
		return 0, err
	}
	done := map[string]map[int]int64{}
	for _, group := range groups {
		committed, err := client.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: group, Topics: parts})
		if err != nil {
			return 0, err
		}
		if committed.Error != nil {
			return 0, committed.Error
		}
		for topic, ps := range committed.Topics {
			if done[topic] == nil {
				done[topic] = map[int]int64{}
			}
			for _, p := range ps {
				if p.Error == nil && p.CommittedOffset > 0 {
					done[topic][p.Partition] = max(done[topic][p.Partition], p.CommittedOffset)
				}
			}
		}
	}
	var lag int64
	for _, topic := range topics {
		ends, err := endOffsets(ctx, client, topic)
		if err != nil {
			return 0, err
		}
		done := done[topic]
		for p, end := range ends {
			if end > done[p] {
				lag += end - done[p]
			}
		}
	}
	return lag, nil
}

func factoryClient(t *testing.T, cfg config.Config) *kafka.Client {
	t.Helper()
	f, err := kafkaclient.New(cfg.Kafka)
	if err != nil {
		t.Fatal(err)
	}
	return f.Client()
}

// sourceOf names the connector record an output came from (cimstream.source.* headers).
func sourceOf(o *outRecord) string {
	return fmt.Sprintf("inbound p%s@%s", o.Headers["cimstream.source.partition"], o.Headers["cimstream.source.offset"])
}

// checkLifecycle checks what the CCM sees of each keyed scripted conversation that kept one
// conversationId: on its partition, first copies in order, CHANNEL_SESSION_STARTED comes before its
// first message, no message comes after its end (ENDED or EXPIRED), and a conversation that was ended
// (a later one of the customer exists, or its last message is END_CHAT) has exactly one end. It records
// each conversation's view in res.lifecycle.
func checkLifecycle(s *script, outs []*outRecord, res *sessionsResult, owners map[string]map[convKey]bool,
	kind func(string) *tally, keyed *tally) (missing, order int, examples []string) {
	firstByID := map[string]bool{}
	perConv := map[string][]*outRecord{} // conversationId → first copies, in partition order
	for _, o := range outs {             // outs are sorted by partition and offset
		if o.id != "" {
			if firstByID[o.id] {
				continue
			}
			firstByID[o.id] = true
		}
		if o.event != "" || (o.text != "" && res.first[o.text] == o) {
			perConv[o.conversationID] = append(perConv[o.conversationID], o)
		}
	}
	note := func(format string, args ...any) {
		if len(examples) < 5 {
			examples = append(examples, fmt.Sprintf(format, args...))
		}
	}
	for _, c := range s.customers {
		if kind(c.name) != keyed || len(c.msgs) == 0 {
			continue
		}
		lastConv := c.msgs[len(c.msgs)-1].conv
		for conv := 0; conv <= lastConv; conv++ {
			ck := convKey{c.name, conv}
			var msgs []*scriptMsg
			for _, m := range c.msgs {
				if m.conv == conv {
					msgs = append(msgs, m)
				}
			}
			first := res.first[msgs[0].text]
			if first == nil || len(owners[first.conversationID]) != 1 {
				continue // lost, ambiguous or merged: counted elsewhere
			}
			var view []string
			started, ends, lastMsg, firstMsg, endAt := -1, 0, -1, -1, -1
			for i, o := range perConv[first.conversationID] {
				switch o.event {
				case "":
					view = append(view, o.text)
					lastMsg = i
					if firstMsg < 0 {
						firstMsg = i
					}
				case inbound.EventStarted:
					view = append(view, o.event)
					if started < 0 {
						started = i
					}
				default:
					view = append(view, o.event+"/"+o.reason)
					ends++
					endAt = i
				}
			}
			res.lifecycle[ck] = view
			ended := conv < lastConv || msgs[len(msgs)-1].intent == "END_CHAT"
			switch {
			case started < 0:
				missing++
				note("%s conversation %d: no CHANNEL_SESSION_STARTED: %v", c.name, conv, view)
			case started > firstMsg:
				order++
				note("%s conversation %d: STARTED after a message: %v", c.name, conv, view)
			}
			switch {
			case ended && ends == 0:
				missing++
				note("%s conversation %d: ended without ENDED or EXPIRED: %v", c.name, conv, view)
			case ends > 1:
				order++
				note("%s conversation %d: more than one end: %v", c.name, conv, view)
			case ends == 1 && endAt < lastMsg:
				order++
				note("%s conversation %d: a message after its end: %v", c.name, conv, view)
			}
		}
	}
	return missing, order, examples
}
