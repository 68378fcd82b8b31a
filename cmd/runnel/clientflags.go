package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/runnel-dev/runnel/client"
)

// brokersEnv names the environment variable that sets the default of
// --brokers.
const brokersEnv = "RUNNEL_BROKERS"

// clientFlags are the flags every client command takes.
type clientFlags struct {
	brokers string
	format  string
}

// addBrokersFlag adds --brokers, defaulting to $RUNNEL_BROKERS or the
// address `runnel serve` listens on.
func (f *clientFlags) addBrokersFlag(cmd *cobra.Command) {
	def := os.Getenv(brokersEnv)
	if def == "" {
		def = client.DefaultBroker
	}
	cmd.Flags().StringVar(&f.brokers, "brokers", def, "broker addresses HOST:PORT,... (env "+brokersEnv+")")
}

// addFormatFlag adds --format with the given choices, the first being the
// default.
func (f *clientFlags) addFormatFlag(cmd *cobra.Command, choices ...string) {
	cmd.Flags().StringVar(&f.format, "format", choices[0], "output format: "+strings.Join(choices, " or "))
}

// checkFormat fails unless --format is one of choices.
func (f *clientFlags) checkFormat(choices ...string) error {
	for _, c := range choices {
		if f.format == c {
			return nil
		}
	}
	return fmt.Errorf("--format %q: use %s", f.format, strings.Join(choices, " or "))
}

// newClient connects to --brokers.
func (f *clientFlags) newClient(ctx context.Context, opts ...client.Option) (*client.Client, error) {
	if strings.TrimSpace(f.brokers) == "" {
		return nil, errors.New("--brokers is empty; give HOST:PORT of a running broker")
	}
	return client.New(ctx, append([]client.Option{client.Brokers(f.brokers)}, opts...)...)
}

// explain turns err into the one line a person reads after "runnel: ": the
// broker's own sentence where there is one, with a hint for a broker that
// cannot be reached.
func explain(err error) error {
	if err == nil {
		return nil
	}
	var ce *client.ConnectError
	var be *client.Error
	var msg string
	switch {
	case errors.As(err, &ce):
		msg = fmt.Sprintf("cannot reach a broker at %s (%s); start one with `runnel serve` or point --brokers (or %s) at a running one",
			ce.Addr, transportReason(ce.Err), brokersEnv)
	case errors.Is(err, context.Canceled):
		msg = "interrupted"
	case errors.As(err, &be):
		// The broker's message says what happened and what to do; the
		// wrapping (which call, which partition) is in it already.
		msg = be.Error()
	default:
		msg = err.Error()
	}
	return errors.New(oneLine(msg))
}

// transportReason shortens a transport error to its last clause, such as
// "connection refused".
func transportReason(err error) string {
	s := strings.TrimSpace(err.Error())
	s = strings.Trim(s, `"`)
	if i := strings.LastIndex(s, ": "); i >= 0 {
		s = s[i+2:]
	}
	return strings.Trim(s, `"`)
}

// oneLine folds msg onto one line.
func oneLine(msg string) string {
	return strings.ReplaceAll(strings.TrimSpace(msg), "\n", "; ")
}

// parseKV parses the KEY=VALUE arguments of flag.
func parseKV(flag string, args []string) (map[string]string, error) {
	out := make(map[string]string, len(args))
	for _, a := range args {
		k, v, ok := strings.Cut(a, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("--%s %q: want KEY=VALUE", flag, a)
		}
		out[k] = v
	}
	return out, nil
}
