package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/cimstream/cimstream/internal/config"
	"github.com/cimstream/cimstream/internal/deadletter/tool"
	"github.com/cimstream/cimstream/internal/kafkaclient"
)

// dlqFilters are the selection flags both subcommands take.
type dlqFilters struct {
	topic        string
	codes        []string
	sourceTopics []string
	pipelines    []string
	ids          []string
	since, until string

	changed func(name string) bool // whether a flag was given, to tell an empty value from none
}

func (f *dlqFilters) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	f.changed = fl.Changed
	fl.StringVar(&f.topic, "topic", "", "dead-letter topic (default: topics.deadLetter of the configuration)")
	fl.StringSliceVar(&f.codes, "code", nil, "only dead letters with one of these error codes (repeatable or comma-separated), e.g. required,malformed")
	fl.StringSliceVar(&f.sourceTopics, "source-topic", nil, "only dead letters of records from these topics (repeatable or comma-separated)")
	fl.StringSliceVar(&f.pipelines, "pipeline", nil, "only dead letters of this pipeline: inbound, outbound or egress (webhook channels)")
	fl.StringSliceVar(&f.ids, "id", nil, "only dead letters of messages with these CIM ids (repeatable or comma-separated)")
	fl.StringVar(&f.since, "since", "", "only records from this time on: RFC 3339 (2026-05-01T12:00:00Z) or an age (90m, 2h, 7d)")
	fl.StringVar(&f.until, "until", "", "only records before this time: RFC 3339 or an age")
}

// filter checks the flags and builds the selection; now resolves ages.
func (f *dlqFilters) filter(now time.Time) (tool.Filter, error) {
	out := tool.Filter{Codes: f.codes, SourceTopics: f.sourceTopics, IDs: f.ids}
	// A list flag given an empty value (--code= or --id "") parses to an empty list, which would select
	// every dead letter: refuse it rather than widen the selection.
	if f.changed != nil {
		for _, flag := range []struct {
			name  string
			empty bool
		}{{"code", len(f.codes) == 0}, {"source-topic", len(f.sourceTopics) == 0}, {"pipeline", len(f.pipelines) == 0},
			{"id", len(f.ids) == 0}, {"since", strings.TrimSpace(f.since) == ""}, {"until", strings.TrimSpace(f.until) == ""}} {
			if flag.empty && f.changed(flag.name) {
				return out, usagef("--%s: empty value (leave the flag out to select every dead letter)", flag.name)
			}
		}
	}
	for _, flag := range []struct {
		name   string
		values []string
	}{{"--code", f.codes}, {"--source-topic", f.sourceTopics}, {"--id", f.ids}} {
		if slices.ContainsFunc(flag.values, func(v string) bool { return strings.TrimSpace(v) == "" }) {
			return out, usagef("%s: empty value", flag.name)
		}
	}
	for _, p := range f.pipelines {
		if p != "inbound" && p != "outbound" && p != "egress" {
			return out, usagef("--pipeline must be inbound, outbound or egress, not %q", p)
		}
		out.Pipelines = append(out.Pipelines, p)
	}
	var err error
	if out.Since, err = parseDLQWhen("--since", f.since, now); err != nil {
		return out, err
	}
	if out.Until, err = parseDLQWhen("--until", f.until, now); err != nil {
		return out, err
	}
	if !out.Since.IsZero() && !out.Until.IsZero() && !out.Since.Before(out.Until) {
		return out, usagef("--since (%s) must be before --until (%s)", out.Since.Format(time.RFC3339), out.Until.Format(time.RFC3339))
	}
	return out, nil
}

// parseDLQWhen reads an RFC 3339 time or an age before now (a Go duration, or whole days as "7d").
func parseDLQWhen(flag, s string, now time.Time) (time.Time, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	var d time.Duration
	var err error
	if days, ok := strings.CutSuffix(s, "d"); ok {
		var n int
		n, err = strconv.Atoi(days)
		d = time.Duration(n) * 24 * time.Hour
	} else {
		d, err = time.ParseDuration(s)
	}
	if err != nil || d < 0 {
		return time.Time{}, usagef("%s: %q is neither an RFC 3339 time (2026-05-01T12:00:00Z) nor an age (90m, 2h, 7d)", flag, s)
	}
	return now.Add(-d), nil
}

// dlqNoArgs refuses arguments as a usage error (cobra.NoArgs's error would not say it is one).
func dlqNoArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usagef("%s: unexpected argument %q (filters are flags, e.g. --code required)", cmd.CommandPath(), args[0])
	}
	return nil
}

// newDLQCommand is `cimstream dlq` with its subcommands inspect and replay. loadConfig reads the
// configuration the root command's --config, --set and other persistent flags name.
func newDLQCommand(loadConfig func(cmd *cobra.Command) (config.Config, error)) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "dlq",
		Short: "Inspect and replay dead letters",
		Long: `Inspect and replay the dead-letter topic (topics.deadLetter).

A dead letter keeps the original record's key, value and headers, plus headers naming the error
codes, a detail, the pipeline and the source topic, partition and offset. "inspect" counts and lists
them; "replay" re-produces chosen ones to their source topic once the cause is fixed.

Both read the configuration like every other command (--config, --set, CIMSTREAM_* variables), so they
work against a cluster with TLS and SASL.`,
		Example: `  cimstream dlq inspect --config cimstream.yaml --since 24h
  cimstream dlq replay --config cimstream.yaml --code delivery_failed --dry-run`,
		Args:          cobra.ArbitraryArgs,
		RunE:          groupRun,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	// Subcommands inherit it: a mistyped flag is a usage error (exit 2) under any root.
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	cmd.AddCommand(newDLQInspectCommand(loadConfig), newDLQReplayCommand(loadConfig))
	return cmd
}

func newDLQInspectCommand(loadConfig func(cmd *cobra.Command) (config.Config, error)) *cobra.Command {
	var f dlqFilters
	var list bool
	var format string
	cmd := &cobra.Command{
		Use:   "inspect [flags]",
		Short: "Count dead letters by code, source topic, pipeline and age, or list them as JSON lines",
		Long: `Read the dead-letter topic up to its current end and count the dead letters the filters select:
by error code (a dead letter with several codes counts under each), source topic, pipeline and age
(the age of the original record's timestamp, which the dead letter keeps). Replayed ones are counted too.

With --list, print each selected dead letter as one JSON line instead: its place in the topic, codes,
detail, pipeline, source, replay count, whether a replay already replayed it, and the original key,
value and headers (as text, or base64 in keyBase64/valueBase64 when not UTF-8).

Exit status: 0 done, 1 Kafka or configuration error, 2 usage error.`,
		Example: `  cimstream dlq inspect --config cimstream.yaml
  cimstream dlq inspect --code required,type --source-topic cim.inbound.web --since 24h
  cimstream dlq inspect --id 9f0c1e7a-0000-4000-8000-000000000001 --list
  cimstream dlq inspect --list --since 2026-05-01T00:00:00Z --until 2026-05-02T00:00:00Z | jq -r .detail`,
		Args: dlqNoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if format != "text" && format != "json" {
				return usagef("--format must be text or json, not %q", format)
			}
			now := time.Now()
			filter, err := f.filter(now)
			if err != nil {
				return err
			}
			cfg, err := loadConfig(cmd)
			if err != nil {
				return err
			}
			factory, err := dlqConnect(cmd, cfg)
			if err != nil {
				return err
			}
			ctx, stop := dlqContext(cmd)
			defer stop()
			out := cmd.OutOrStdout()
			enc := json.NewEncoder(out)
			in := tool.Inspect{Topic: dlqFirstNonBlank(f.topic, cfg.Topics.DeadLetter), Filter: filter, Now: now}
			if list {
				in.OnLetter = func(l tool.Letter, replayed bool) error { return enc.Encode(l.JSON(&replayed)) }
			}
			s, err := in.Run(ctx, tool.KafkaBroker(factory))
			if err != nil {
				return err
			}
			switch {
			case list:
				fmt.Fprintf(cmd.ErrOrStderr(), "%d of %d dead letters selected\n", s.Selected, s.Letters)
			case format == "json":
				return enc.Encode(s)
			default:
				printDLQSummary(out, s)
			}
			return nil
		},
	}
	f.register(cmd)
	cmd.Flags().BoolVar(&list, "list", false, "print each selected dead letter as a JSON line instead of the counts")
	cmd.Flags().StringVar(&format, "format", "text", "counts as text or json")
	return cmd
}

func printDLQSummary(w io.Writer, s tool.Summary) {
	fmt.Fprintf(w, "%s: %d dead letters, %d selected, %d of them already replayed\n", s.Topic, s.Letters, s.Selected, s.Replayed)
	section := func(title string, counts []tool.AgeCount) {
		fmt.Fprintf(w, "\nby %s:\n", title)
		if len(counts) == 0 {
			fmt.Fprintln(w, "  (none)")
		}
		for _, c := range counts {
			fmt.Fprintf(w, "  %-40s %d\n", c.Bucket, c.Count)
		}
	}
	section("code", tool.Counts(s.ByCode))
	section("source topic", tool.Counts(s.BySource))
	section("pipeline", tool.Counts(s.ByPipeline))
	section("age", s.ByAge)
}

func newDLQReplayCommand(loadConfig func(cmd *cobra.Command) (config.Config, error)) *cobra.Command {
	var f dlqFilters
	var to, format string
	var dryRun, list bool
	var maxReplays int
	cmd := &cobra.Command{
		Use:   "replay [flags]",
		Short: "Re-produce chosen dead letters to their source topic (or another), re-validated and once only",
		Long: `Re-produce the dead letters the filters select to their source topic (or --to), with the original key,
value, headers and timestamp, without the dead letter's own headers, plus cimstream.replay.count (one more
than the original had) and cimstream.replay.of (the dead letter's topic/partition/offset).

Each is first re-validated with the rules of the pipeline that will read it (and, for the outbound
input, the configured routes); what is still invalid stays in the dead-letter topic. So replay repairs
dead letters whose bytes were fine (delivery_failed, refused, no_route once routed, too_large once the
limit is raised); for validation codes (malformed, required, ...) the connector must send again. A record already
replayed --max-replays times is refused (loop guard). Truncated dead letters (the value was cut to
deadLetters.maxValueBytes) cannot be replayed faithfully and are reported as unreplayable, as are those
whose target topic does not exist and those the target refuses for good (too large, timestamp, policy;
a later run tries them again).

Each original record is replayed once, also when the pipeline dead-lettered it twice: the replay writes
markers to the dead-letter topic that later runs read, whatever their filters, and an interrupted run is
completed by the next one without duplicates. Run one replay at a time: a run refuses to start, or stops
before producing, when another replay may be writing (exit 1; the message says when to run again), and
a run stalled past that window and taken over by another stops saying records may have been replayed
twice. The run reads up to the topic's end at its start.

Output: with --dry-run or --list, one JSON line per selected dead letter (outcome, target, reason or
violations, the dead letter) on standard output. Then the account: read = replayed + still invalid +
guarded + already replayed + unreplayable + filtered (+ unfinished when a write failed), as text (on
standard error when JSON lines were printed) or, with --format json, as a last JSON line
{"dryRun":...,"account":{...}}. A progress line is shown when standard error is a terminal.

Exit status: 0 the run completed (still invalid, guarded or unreplayable dead letters are reported,
not failures), 1 a Kafka or configuration error stopped it (rerun to continue), 2 usage error.`,
		Example: `  cimstream dlq replay --source-topic cim.inbound.web --code too_large --dry-run
  cimstream dlq replay --source-topic cim.inbound.web --code too_large --since 2h
  cimstream dlq replay --code no_route --pipeline outbound --config cimstream.yaml
  cimstream dlq replay --id 9f0c1e7a-0000-4000-8000-000000000001 --to cim.inbound.web --format json`,
		Args: dlqNoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if format != "text" && format != "json" {
				return usagef("--format must be text or json, not %q", format)
			}
			if maxReplays < 1 {
				return usagef("--max-replays must be at least 1, not %d", maxReplays)
			}
			if cmd.Flags().Changed("to") && strings.TrimSpace(to) == "" {
				return usagef("--to: empty topic name")
			}
			filter, err := f.filter(time.Now())
			if err != nil {
				return err
			}
			cfg, err := loadConfig(cmd)
			if err != nil {
				return err
			}
			if to != "" && to == dlqFirstNonBlank(f.topic, cfg.Topics.DeadLetter) {
				return usagef("--to %s is the dead-letter topic itself", to)
			}
			factory, err := dlqConnect(cmd, cfg)
			if err != nil {
				return err
			}
			ctx, stop := dlqContext(cmd)
			defer stop()
			out, errOut := cmd.OutOrStdout(), cmd.ErrOrStderr()
			enc := json.NewEncoder(out)
			r := tool.Replay{Topic: dlqFirstNonBlank(f.topic, cfg.Topics.DeadLetter), Filter: filter, To: to, MaxReplays: maxReplays,
				DryRun: dryRun, Validate: tool.Validator(cfg), Partition: tool.Partitioner(cfg), Own: tool.Own(cfg),
				// A live run finishes a batch within three produce timeouts (intent, records, done); the
				// default window adds minutes for clock skew and a stalled process.
				ActiveWindow: tool.DefaultActiveWindow + 3*cfg.Kafka.Producer.WriteTimeout}
			if dryRun || list {
				r.OnDecision = func(d tool.Decision) { _ = enc.Encode(d.JSON()) }
			}
			progress := newDLQProgressLine(errOut)
			r.OnProgress = progress.show
			acct, err := r.Run(ctx, tool.KafkaBroker(factory))
			progress.clear()
			verb := "replay"
			if dryRun {
				verb = "dry run (nothing written)"
			}
			if format == "json" {
				_ = enc.Encode(struct {
					DryRun  bool         `json:"dryRun"`
					Account tool.Account `json:"account"`
					Error   string       `json:"error,omitempty"`
				}{dryRun, acct, dlqErrText(err)})
			} else if dryRun || list {
				fmt.Fprintf(errOut, "%s: %s\n", verb, acct) // stdout stays JSON lines
			} else {
				fmt.Fprintf(out, "%s: %s\n", verb, acct)
			}
			return err
		},
	}
	f.register(cmd)
	fl := cmd.Flags()
	fl.StringVar(&to, "to", "", "replay to this topic instead of each dead letter's source topic")
	fl.BoolVar(&dryRun, "dry-run", false, "write nothing; print what would be replayed (and why the others would not)")
	fl.BoolVar(&list, "list", false, "print one JSON line per selected dead letter, as --dry-run does")
	fl.IntVar(&maxReplays, "max-replays", tool.DefaultMaxReplays, "loop guard: refuse records already replayed this many times")
	fl.StringVar(&format, "format", "text", "the account as text or json")
	return cmd
}

func dlqErrText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// dlqConnect connects within the request timeout.
func dlqConnect(cmd *cobra.Command, cfg config.Config) (*kafkaclient.Factory, error) {
	ctx, cancel := context.WithTimeout(cmd.Context(), cfg.Kafka.RequestTimeout)
	defer cancel()
	return connect(ctx, cfg)
}

// dlqContext ends on SIGINT or SIGTERM: a replay stopped that way is completed by the next run.
func dlqContext(cmd *cobra.Command) (context.Context, context.CancelFunc) {
	return signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
}

func dlqFirstNonBlank(s ...string) string {
	for _, v := range s {
		if strings.TrimSpace(v) != "" {
			return v
		}
	}
	return ""
}

// dlqProgressLine rewrites one line on a terminal, at most a few times a second; elsewhere it is silent.
type dlqProgressLine struct {
	w     io.Writer
	on    bool
	last  time.Time
	shown bool
}

func newDLQProgressLine(w io.Writer) *dlqProgressLine {
	return &dlqProgressLine{w: w, on: isTerminal(w)}
}

// isTerminal reports whether w is a terminal, where a progress line can be rewritten in place.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

func (p *dlqProgressLine) show(pr tool.Progress) {
	if !p.on || (time.Since(p.last) < 200*time.Millisecond && pr.Records < pr.Total) {
		return
	}
	p.last = time.Now()
	p.shown = true
	a := pr.Account
	fmt.Fprintf(p.w, "\r\033[K%d/%d records read: replayed %d, still invalid %d, guarded %d, already replayed %d, filtered %d",
		pr.Records, pr.Total, a.Replayed, a.StillInvalid, a.Guarded, a.AlreadyReplayed, a.Filtered)
}

func (p *dlqProgressLine) clear() {
	if p.shown {
		fmt.Fprint(p.w, "\r\033[K")
	}
}
