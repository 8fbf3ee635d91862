package cli

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/cairn-es/cairn/projection"
)

// progress shows a rebuild's progress on standard error: a bar on a
// terminal, periodic log lines otherwise. Rebuild calls update from its own
// goroutine, one call at a time.
type progress struct {
	w        io.Writer
	name     string
	mode     string // "bar", "log" or "none"
	interval time.Duration

	bar     *progressbar.ProgressBar
	last    projection.Progress
	printed time.Time
	lines   int
	pending bool  // the last update has not been printed
	shown   int64 // events done at the last line printed
}

func newProgress(cmd *cobra.Command, name, mode string, interval time.Duration) (*progress, error) {
	w := cmd.ErrOrStderr()
	switch mode {
	case "auto":
		mode = "log"
		if isTerminal(w) {
			mode = "bar"
		}
	case "bar", "log", "none":
	default:
		return nil, Usagef(cmd, "--progress %q: want auto, bar, log or none", mode)
	}
	return &progress{w: w, name: name, mode: mode, interval: interval}, nil
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

func (p *progress) update(pr projection.Progress) {
	p.last = pr
	switch p.mode {
	case "bar":
		if pr.Total <= 0 {
			return
		}
		if p.bar == nil {
			p.bar = progressbar.NewOptions64(pr.Total,
				progressbar.OptionSetWriter(p.w),
				progressbar.OptionSetDescription("rebuild "+p.name),
				progressbar.OptionShowCount(),
				progressbar.OptionShowIts(),
				progressbar.OptionSetItsString("events"),
				progressbar.OptionSetElapsedTime(true),
				progressbar.OptionSetPredictTime(true),
				progressbar.OptionThrottle(100*time.Millisecond),
				progressbar.OptionFullWidth(),
				progressbar.OptionSetRenderBlankState(true),
			)
		}
		if pr.Total != p.bar.GetMax64() {
			p.bar.ChangeMax64(pr.Total)
		}
		_ = p.bar.Set64(pr.Done)
	case "log":
		if p.lines > 0 && pr.Done == p.shown {
			return // nothing new to say
		}
		p.pending = true
		if p.lines == 0 || time.Since(p.printed) >= p.interval {
			p.logLine(pr)
		}
	}
}

// logLine prints one progress line: done/total, rate, ETA.
func (p *progress) logLine(pr projection.Progress) {
	p.printed = time.Now()
	p.lines++
	p.pending = false
	p.shown = pr.Done
	rate := 0.0
	if s := pr.Elapsed.Seconds(); s > 0 {
		rate = float64(pr.Done) / s
	}
	pct, eta := 100.0, "0s"
	if pr.Total > 0 {
		pct = 100 * float64(pr.Done) / float64(pr.Total)
	}
	if rate > 0 && pr.Total > pr.Done {
		eta = time.Duration(float64(pr.Total-pr.Done) / rate * float64(time.Second)).Round(time.Second).String()
	}
	fmt.Fprintf(p.w, "rebuild %s: %d/%d events (%.1f%%), %.0f events/s, elapsed %s, ETA %s\n",
		p.name, pr.Done, pr.Total, pct, rate, pr.Elapsed.Round(time.Millisecond), eta)
}

// finish completes the display once Rebuild has returned.
func (p *progress) finish(ok bool) {
	switch p.mode {
	case "bar":
		if p.bar != nil {
			if ok {
				_ = p.bar.Finish()
			}
			fmt.Fprintln(p.w)
		}
	case "log":
		if ok && p.pending {
			p.logLine(p.last) // the final count
		}
	}
}
