package main

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/cimstream/cimstream/internal/kafkaclient"
)

// ceilings measures the broker ceiling with Kafka's own tools: ProducerPerformance writes messages
// records of size bytes with acks=all to topic, then ConsumerPerformance reads them back in a group. It
// returns their figures and command lines.
func ceilings(f *kafkaclient.Factory, brokers, topic string) (producer, consumer Figure, cmds []string, err error) {
	before := cpuSeconds(broker)
	producer, cmd, err := producerPerformance(f, brokers, topic)
	cmds = append(cmds, cmd)
	if err != nil {
		return producer, consumer, cmds, err
	}
	producer.BrokerCPUPer100k = perRecords(cpuSeconds(broker)-before, producer.Records, 1e5)
	before = cpuSeconds(broker)
	consumer, cmd, err = consumerPerformance(brokers, topic, producer.Records)
	cmds = append(cmds, cmd)
	consumer.BrokerCPUPer100k = perRecords(cpuSeconds(broker)-before, consumer.Records, 1e5)
	return producer, consumer, cmds, err
}

// consumerPerformance reads n records of topic with Kafka's ConsumerPerformance. Its figure is the
// fetch rate, which leaves out the group join (reported apart by the tool as rebalance.time.ms).
func consumerPerformance(brokers, topic string, n int) (Figure, string, error) {
	args := []string{"tool", "org.apache.kafka.tools.ConsumerPerformance", "--bootstrap-server", brokers, "--topic", topic,
		"--num-records", strconv.Itoa(n), "--group", topic + ".perf", "--timeout", "60000"}
	cmdline := "scripts/kafka.sh " + strings.Join(args, " ")
	start := time.Now()
	out, err := exec.Command(filepath.Join(root, "scripts", "kafka.sh"), args...).CombinedOutput()
	if err != nil {
		return Figure{}, cmdline, fmt.Errorf("ConsumerPerformance: %v\n%s", err, out)
	}
	fig, ok := parseConsumerPerformance(string(out))
	if !ok {
		return fig, cmdline, fmt.Errorf("no summary in ConsumerPerformance output (%v):\n%s", time.Since(start), out)
	}
	return fig, cmdline, nil
}

// parseConsumerPerformance reads the tool's summary line: start.time, end.time, data.consumed.in.MB,
// MB.sec, data.consumed.in.nMsg, nMsg.sec, rebalance.time.ms, fetch.time.ms, fetch.MB.sec, fetch.nMsg.sec.
func parseConsumerPerformance(out string) (Figure, bool) {
	var fig Figure
	ok := false
	for _, line := range strings.Split(out, "\n") {
		fs := strings.Split(line, ",")
		if len(fs) != 10 {
			continue
		}
		n, err1 := strconv.ParseFloat(strings.TrimSpace(fs[4]), 64)
		fetchMs, err2 := strconv.ParseFloat(strings.TrimSpace(fs[7]), 64)
		if err1 != nil || err2 != nil || n <= 0 || fetchMs <= 0 {
			continue // the header line, or nothing read
		}
		fig = Figure{Records: int(n), Seconds: fetchMs / 1000, PerSecond: n / (fetchMs / 1000)}
		ok = true
	}
	return fig, ok
}
