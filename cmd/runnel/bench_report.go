package main

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/runnel-dev/runnel/bench"
)

// report writes res to stdout as a table or JSON and, with --out, into
// the --out folder with its plots, naming the files written on stderr.
func (f *benchFlags) report(cmd *cobra.Command, res *bench.Result) error {
	var err error
	if f.format == "json" {
		err = res.WriteJSON(cmd.OutOrStdout())
	} else {
		err = res.WriteTable(cmd.OutOrStdout())
	}
	if err != nil || f.out == "" {
		return err
	}
	paths, err := res.WriteDir(f.out)
	for _, p := range paths {
		fmt.Fprintf(cmd.ErrOrStderr(), "wrote %s\n", p)
	}
	if err != nil {
		return fmt.Errorf("--out %s: %w", f.out, err)
	}
	return nil
}

// progressLine returns a progress callback that, once a run has gone on
// for two seconds, keeps one line on w up to date with the records done
// out of total, and a func that clears the line at the end. Both are
// no-ops when w is not a terminal, so output to a file or a pipe gets
// nothing extra.
func progressLine(w io.Writer, total int) (progress func(int64, time.Duration), clear func()) {
	f, ok := w.(*os.File)
	if !ok || !isTerminal(f) {
		return nil, func() {}
	}
	shown := false
	progress = func(n int64, elapsed time.Duration) {
		if elapsed < 2*time.Second {
			return
		}
		shown = true
		fmt.Fprintf(f, "\r%d/%d records, %.0f/s, %s\033[K", n, total, float64(n)/elapsed.Seconds(), elapsed.Truncate(time.Second))
	}
	clear = func() {
		if shown {
			fmt.Fprint(f, "\r\033[K")
		}
	}
	return progress, clear
}
