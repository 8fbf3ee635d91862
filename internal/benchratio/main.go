// Command benchratio reads `go test -bench` output and prints each Cairn
// figure as a ratio to the baseline measured in the same run, which is how
// docs/benchmarks.md reports performance on shared, noisy machines.
//
//	go run ./internal/benchratio bench.out
package main

import (
	"bufio"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// pair names a measured benchmark and its same-run baseline. Throughput
// ratios come from ns/op (baseline time / subject time), so they read as
// "the subject runs at this fraction of the baseline's rate".
type pair struct {
	subject, baseline, note string
}

var pairs = []pair{
	{"SingleAppend/store/writers=1", "SingleAppend/raw-insert/writers=1", "single-event append vs raw pgx INSERT, 1 writer (goal ≥ 0.70)"},
	{"SingleAppend/store/writers=4", "SingleAppend/raw-insert/writers=4", "single-event append vs raw pgx INSERT, 4 writers (goal ≥ 0.70)"},
	{"SingleAppend/store/writers=16", "SingleAppend/raw-insert/writers=16", "single-event append vs raw pgx INSERT, 16 writers (goal ≥ 0.70)"},
	{"BatchAppend100/store", "BatchAppend100/copy", "100-event batch append vs COPY of the same rows (goal ≥ 0.60)"},
	{"Load1000/replay", "Load1000/raw-select", "load a 1,000-event aggregate by replay vs raw SELECT + decode"},
	{"Load1000/snapshot", "Load1000/raw-select", "load a 1,000-event aggregate from a snapshot vs raw SELECT + decode"},
	{"Dispatch/dispatch", "Dispatch/raw-insert", "command dispatched end to end (AppendOnly handler) vs raw pgx INSERT of its event (goal ≥ 0.6)"},
	{"Dispatch/dispatch-lookup-first", "Dispatch/raw-insert", "command dispatched end to end, command log looked up first, vs raw pgx INSERT of its event"},
	{"TracingOff/traced-off", "TracingOff/untraced", "command dispatched to the memory store, tracing off (no SDK), vs the same chain without the Tracing middleware"},
	{"Rebuild/per-event", "Rebuild/copy-baseline", "rebuild, per-event upserts vs COPY of the same rows (goal ≥ 0.25)"},
	{"Rebuild/batch", "Rebuild/copy-baseline", "rebuild, batch projector vs COPY of the same rows (goal ≥ 0.40)"},
	{"HTTPGetByID/framework", "HTTPGetByID/bare", "HTTP GET by ID, server.Query route vs bare echo+pgx, 8 clients (goal ≥ 0.90)"},
	{"HTTPList/framework", "HTTPList/bare", "HTTP page of 20 (query.List) vs bare echo+pgx, same SQL, 8 clients (goal ≥ 0.90)"},
	{"HTTPCommand/post", "HTTPCommand/append", "HTTP POST command end to end vs raw store.Append of one event, 8 clients"},
	{"Orders/end-to-end", "Orders/raw-insert", "sample orders completed end to end (HTTP, saga, 4 contexts, read models) vs raw pgx INSERT commits, 16 clients"},
	{"IntegrationPublish/publisher", "IntegrationPublish/sync-loop", "integration publisher (log to JetStream, checkpoints included) vs bare nats.go loop of synchronous publishes, same messages (goal ≥ 0.70)"},
	{"IntegrationPublish/publisher", "IntegrationPublish/async-loop", "integration publisher vs bare nats.go loop of async publishes (window 256, all acked), same messages (no goal: the publisher publishes one at a time to keep order per key)"},
}

// figure names a custom metric worth printing as it is (latencies).
type figure struct {
	benchmark, unit, note string
}

var figures = []figure{
	{"LiveLag/cairn", "p50-ms", "live lag, commit to read model, p50 (ms)"},
	{"LiveLag/cairn", "p99-ms", "live lag, commit to read model, p99 (ms; goal < 50)"},
	{"LiveLag/raw-insert-notify", "p99-ms", "baseline: raw INSERT + NOTIFY round trip, p99 (ms)"},
	{"LiveLag/cairn", "p99-x-raw", "live lag p99 ÷ raw INSERT + NOTIFY p99"},
	{"Orders/end-to-end", "orders/s", "sample orders completed per second, 200 placed at once by 16 clients"},
	{"Orders/end-to-end", "p99-ms", "sample order placed → completed, p99 (ms), 200 at once (queueing included)"},
	{"Orders/one-at-a-time", "p50-ms", "sample order placed → completed, p50 (ms), one at a time"},
	{"Orders/one-at-a-time", "p99-ms", "sample order placed → completed, p99 (ms), one at a time"},
	{"IntegrationLatency", "p50-ms", "event committed in service A → its command's event in service B over JetStream, p50 (ms), 500 events/s"},
	{"IntegrationLatency", "p99-ms", "event committed in service A → its command's event in service B over JetStream, p99 (ms; goal < 50), 500 events/s"},
	{"IntegrationLatency", "publish-p99-ms", "service A → service B, publishing leg only (A's event → stored in the stream), p99 (ms)"},
	{"IntegrationLatency", "events/s", "service A → service B: write rate achieved in A (events/s; target 500)"},
}

var line = regexp.MustCompile(`^Benchmark(\S+?)(-\d+)?\s+\d+\s+(.*)$`)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: benchratio BENCH_OUTPUT")
		os.Exit(2)
	}
	f, err := os.Open(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer f.Close()
	// samples[benchmark][unit] holds every run's value.
	samples := map[string]map[string][]float64{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		m := line.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		fields := strings.Fields(m[3])
		for i := 0; i+1 < len(fields); i += 2 {
			v, err := strconv.ParseFloat(fields[i], 64)
			if err != nil {
				continue
			}
			if samples[m[1]] == nil {
				samples[m[1]] = map[string][]float64{}
			}
			samples[m[1]][fields[i+1]] = append(samples[m[1]][fields[i+1]], v)
		}
	}
	fmt.Println("ratio  = baseline ns/op ÷ subject ns/op (median of runs; 1.00 = as fast as the baseline)")
	fmt.Printf("%-7s %-5s %s\n", "ratio", "runs", "comparison")
	for _, p := range pairs {
		s, b := samples[p.subject]["ns/op"], samples[p.baseline]["ns/op"]
		if len(s) == 0 || len(b) == 0 {
			continue
		}
		fmt.Printf("%-7s %-5d %s\n", ratio(median(b)/median(s)), min(len(s), len(b)), p.note)
	}
	for _, f := range figures {
		v := samples[f.benchmark][f.unit]
		if len(v) == 0 {
			continue
		}
		fmt.Printf("%-7.2f %-5d %s\n", median(v), len(v), f.note)
	}
	fmt.Println(strings.Repeat("-", 60))
}

func median(v []float64) float64 {
	v = slices.Clone(v)
	slices.Sort(v)
	n := len(v)
	if n%2 == 1 {
		return v[n/2]
	}
	return (v[n/2-1] + v[n/2]) / 2
}

// ratio prints r with two decimals, or three significant digits when it is
// too small for two decimals to tell anything.
func ratio(r float64) string {
	if r < 0.1 {
		return strconv.FormatFloat(r, 'g', 3, 64)
	}
	return strconv.FormatFloat(r, 'f', 2, 64)
}
