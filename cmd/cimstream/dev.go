package main

import (
	"cmp"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/cimstream/cimstream/internal/config"
)

func newDevCommand() *cobra.Command {
	port := 9092
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run the service with an in-process broker (no Java, no Docker)",
		Long: `Run cimstream against an in-process Kafka-protocol broker on 127.0.0.1 (data in memory, gone on exit),
with every topic created, for a first look without Java or Docker. It prints how to send and watch messages
with kcat. When the configuration has no channels table, dev maps serviceIdentifier 41445556677 to the
whatsapp channel and web to the web channel, so the README's examples round-trip. It serves the HTTP ingress
(POST /cim-messages) on 127.0.0.1:8081 unless ingress.address is set. A development convenience: every
integration test runs against Apache Kafka.`,
		Example: `  cimstream dev
  cimstream dev --port 19093 --set admin.address=127.0.0.1:18080 --set ingress.address=127.0.0.1:18081
  cimstream dev --config cimstream.yaml --log-format console`,
		Args: argsUsage(cobra.NoArgs),
		RunE: withConfig(func(cmd *cobra.Command, _ []string, cfg config.Config) error {
			return runDev(cfg, port, cmd.OutOrStdout())
		}),
	}
	cmd.Flags().IntVar(&port, "port", port, "port of the in-process broker on 127.0.0.1")
	_ = cmd.RegisterFlagCompletionFunc("port", cobra.NoFileCompletions)
	return cmd
}

// runDev runs cimstream against an in-process Kafka-protocol broker (kfake).
func runDev(cfg config.Config, port int, stdout io.Writer) error {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.Ports(port),
		kfake.BrokerConfigs(map[string]string{"log.cleaner.backoff.ms": "1000"}))
	if err != nil {
		return fmt.Errorf("in-process broker on 127.0.0.1:%d: %w (is the port taken? use --port)", port, err)
	}
	defer cluster.Close()
	cfg.Kafka.Brokers = cluster.ListenAddrs()
	if len(cfg.ChannelMap()) == 0 {
		cfg.Channels = devChannels()
	}
	cfg.Ingress.Address = cmp.Or(cfg.Ingress.Address, DevIngressAddress)
	if err := cfg.Validate(); err != nil {
		return err
	}
	if err := createTopics(cfg); err != nil {
		return err
	}
	b := cfg.Kafka.Brokers[0]
	fmt.Fprintf(stdout, `cimstream dev: in-process Kafka-protocol broker on %s (data in memory, gone on exit)
  send:    echo '{"header":{"sender":{"id":"web-1","type":"CONNECTOR","senderName":"WEB"},"channelData":{"serviceIdentifier":"web","channelCustomerIdentifier":"ann"}},"body":{"type":"PLAIN","markdownText":"Hello"}}' | kcat -P -b %s -t %s
  watch:   kcat -C -b %s -t %s -f 'key=%%k %%s\n'
  errors:  kcat -C -b %s -t %s -f '%%h\n%%s\n'
  health:  curl http://%s/readyz
  http:    curl -H 'Content-Type: application/json' --data-binary @message.json http://%s/cim-messages
  outbound: replies written to %s go to %s; notifications: kcat -C -b %s -t %s
  Apache Kafka instead: make kafka-up (a broker on 127.0.0.1:9092), then cimstream topics create && cimstream run
`, b, b, firstOr(cfg.Topics.InboundChannels, config.InboundTopic("web")), b, cfg.Topics.CCMInbound, b, cfg.Topics.DeadLetter, cfg.Admin.Address, cfg.Ingress.Address,
		cfg.Topics.CCMOutbound, channelList(cfg.ChannelMap()), b, cfg.Topics.Notifications)
	return runService(cfg)
}

// DevIngressAddress is where `cimstream dev` serves the HTTP ingress unless ingress.address says otherwise.
const DevIngressAddress = "127.0.0.1:8081"

// devChannels is dev's channel map when the configuration has none, so that the README's outbound example
// (serviceIdentifier 41445556677) and replies to the web example's customers are routed out of the box.
func devChannels() map[string]string {
	return map[string]string{"41445556677": "whatsapp", "web": "web"}
}

// channelList shows a channel map as serviceIdentifier → topic, sorted.
func channelList(channels map[string]string) string {
	var out []string
	for sid, ch := range channels {
		out = append(out, sid+" → "+config.OutboundTopic(ch))
	}
	sort.Strings(out)
	return strings.Join(out, ", ")
}

func firstOr(list []string, def string) string {
	if len(list) > 0 {
		return list[0]
	}
	return def
}
