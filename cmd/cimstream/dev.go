package main

import (
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/twmb/franz-go/pkg/kfake"
)

// devCommand runs cimstream against an in-process Kafka-protocol broker (kfake), for a first look without
// Java or Docker. It is a development convenience: every integration test runs against Apache Kafka.
func devCommand(args []string, stdout, stderr io.Writer) int {
	port := 9092
	var rest []string
	fs := flag.NewFlagSet("cimstream dev", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.IntVar(&port, "port", port, "port of the in-process broker on 127.0.0.1")
	// The common flags are parsed by loadConfig; pull --port out first.
	for i := 0; i < len(args); i++ {
		switch {
		case args[i] == "--port" || args[i] == "-port":
			if i+1 < len(args) {
				if err := fs.Parse(args[i : i+2]); err != nil {
					return 2
				}
				i++
			}
		case strings.HasPrefix(args[i], "--port=") || strings.HasPrefix(args[i], "-port="):
			if err := fs.Parse(args[i : i+1]); err != nil {
				return 2
			}
		default:
			rest = append(rest, args[i])
		}
	}
	cfg, err := loadConfig("dev", rest, stderr)
	if err != nil {
		return usageOrFail(err, func(err error) int { fmt.Fprintf(stderr, "cimstream: %s\n", oneLine(err)); return 1 })
	}
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.Ports(port),
		kfake.BrokerConfigs(map[string]string{"log.cleaner.backoff.ms": "1000"}))
	if err != nil {
		fmt.Fprintf(stderr, "cimstream: in-process broker on 127.0.0.1:%d: %v (is the port taken? use --port)\n", port, err)
		return 1
	}
	defer cluster.Close()
	cfg.Kafka.Brokers = cluster.ListenAddrs()
	if err := cfg.Validate(); err != nil {
		fmt.Fprintf(stderr, "cimstream: %s\n", oneLine(err))
		return 1
	}
	if err := createTopics(cfg, io.Discard); err != nil {
		fmt.Fprintf(stderr, "cimstream: %s\n", oneLine(err))
		return 1
	}
	b := cfg.Kafka.Brokers[0]
	fmt.Fprintf(stdout, `cimstream dev: in-process Kafka-protocol broker on %s (data in memory, gone on exit)
  send:    echo '{"header":{"sender":{"id":"web-1","type":"CONNECTOR","senderName":"WEB"},"channelData":{"serviceIdentifier":"web","channelCustomerIdentifier":"ann"}},"body":{"type":"PLAIN","markdownText":"Hello"}}' | kcat -P -b %s -t %s
  watch:   kcat -C -b %s -t %s -f 'key=%%k %%s\n'
  errors:  kcat -C -b %s -t %s -f '%%h\n%%s\n'
  health:  curl http://%s/readyz
`, b, b, firstOr(cfg.Topics.InboundChannels, "cim.inbound.web"), b, cfg.Topics.CCMInbound, b, cfg.Topics.DeadLetter, cfg.Admin.Address)
	if err := runService(cfg); err != nil {
		fmt.Fprintf(stderr, "cimstream: %s\n", oneLine(err))
		return 1
	}
	return 0
}

func firstOr(list []string, def string) string {
	if len(list) > 0 {
		return list[0]
	}
	return def
}
