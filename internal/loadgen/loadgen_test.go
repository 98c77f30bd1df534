package loadgen

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/cimstream/cimstream/pkg/cim"
)

func TestGeneratedTrafficIsValidRealisticCIM(t *testing.T) {
	for _, dir := range []cim.Direction{cim.Inbound, cim.Outbound} {
		g := NewGenerator(Options{Direction: dir, Topics: []string{"a", "b", "c"}, Customers: 50, Size: 1024, Keyed: true, RunID: "t"})
		types, topics, customers := map[string]int{}, map[string]bool{}, map[string]string{}
		for i := 0; i < 2000; i++ {
			topic, key, value, invalid := g.Message(i)
			m, err := cim.Decode(value)
			if err != nil || invalid {
				t.Fatalf("%v message %d: %v", dir, i, err)
			}
			if vs := cim.Validate(m, dir); len(vs) > 0 {
				t.Fatalf("%v message %d is invalid: %v\n%s", dir, i, vs, value)
			}
			if m.ID() != g.ID(i) || string(key) != m.ChannelCustomerIdentifier() {
				t.Fatalf("id %q key %q", m.ID(), key)
			}
			if len(value) < 900 || len(value) > 1300 {
				t.Errorf("message %d is %d bytes, want about 1024", i, len(value))
			}
			types[m.BodyType()]++
			topics[topic] = true
			// A customer always writes to the same channel topic, as with a real connector.
			if prev, seen := customers[string(key)]; seen && prev != topic {
				t.Fatalf("customer %s on topics %s and %s", key, prev, topic)
			}
			customers[string(key)] = topic
		}
		if len(types) < 4 || types["PLAIN"] < 1000 {
			t.Errorf("%v body mix %v: want mostly PLAIN and at least four types", dir, types)
		}
		if len(topics) != 3 || len(customers) != 50 {
			t.Errorf("%v: %d topics and %d customers used", dir, len(topics), len(customers))
		}
	}
}

func TestInvalidShareAndUnkeyed(t *testing.T) {
	g := NewGenerator(Options{Direction: cim.Inbound, Topics: []string{"a"}, Customers: 10, Invalid: 0.1, RunID: "x"})
	invalid := 0
	for i := 0; i < 5000; i++ {
		_, key, value, bad := g.Message(i)
		if key != nil {
			t.Fatal("unkeyed traffic must have no key")
		}
		m, err := cim.Decode(value)
		if bad {
			invalid++
			if err == nil && len(cim.Validate(m, cim.Inbound)) == 0 {
				t.Fatal("a message marked invalid validated")
			}
		}
	}
	if invalid < 400 || invalid > 600 {
		t.Errorf("%d invalid of 5000, want about 500", invalid)
	}
}

func TestSummarize(t *testing.T) {
	var lat []time.Duration
	for i := 1; i <= 1000; i++ {
		lat = append(lat, time.Duration(i)*time.Millisecond)
	}
	l := summarize(lat)
	if l.Matched != 1000 || l.P50 != 501*time.Millisecond || l.P99 != 991*time.Millisecond || l.Max != time.Second {
		t.Fatalf("%+v", l)
	}
}

func TestRunHTTPIsOpenLoopAndCountsOutcomes(t *testing.T) {
	var mu sync.Mutex
	seen := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen++
		n := seen
		mu.Unlock()
		if n%10 == 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusAccepted)
	}))
	defer srv.Close()
	st := RunHTTP(context.Background(), srv.Client(), HTTPOptions{URL: srv.URL, Rate: 200, Duration: time.Second, MaxInFlight: 50,
		Body: func(i int) []byte { return []byte(strconv.Itoa(i)) }})
	if st.Sent+st.Dropped != 200 || st.Accepted+st.Failed != st.Sent {
		t.Fatalf("stats %+v: every due request is sent or dropped, every sent one answered", st)
	}
	if st.Failed < 15 || st.Accepted < 150 || st.Latency.Matched != int(st.Accepted) || st.Latency.P99 <= 0 {
		t.Errorf("stats %+v", st)
	}
	if st.Elapsed < 900*time.Millisecond {
		t.Errorf("200 requests at 200/s took %v: not paced", st.Elapsed)
	}
}
