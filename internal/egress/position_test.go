package egress

import (
	"testing"
)

// A webhook topic whose last offset is a transaction's commit marker: once its records are delivered
// the channel commits past the marker, so its lag drains to 0 rather than staying at 1 for good.
func TestChannelCommitsPastTrailingMarkers(t *testing.T) {
	b := newBroker(1)
	txn := b.TxnProducer()
	txn.Begin()
	txn.Send(testTopic, 0, "K", `{"n":"A"}`)
	txn.Send(testTopic, 0, "L", `{"n":"B"}`)
	txn.Commit() // its marker at offset 2
	post := accepting()
	defer start(newTestChannel(b, post, 10))()
	waitUntil(t, "both delivered", func() bool { return len(post.posted()) == 2 })
	waitUntil(t, "commit past the marker at 2", func() bool { return committed(b).Offset == 3 })
}
