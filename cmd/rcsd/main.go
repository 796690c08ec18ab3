// Command rcsd is the RCS messaging server: `rcsd serve` runs it,
// `rcsd subscriber …` provisions users.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"rcsd/config"
)

const usage = `rcsd — RCS messaging server (IMS application server)

Usage:
  rcsd serve [--config FILE] [--KEY VALUE ...]
  rcsd subscriber add <public-uri> [<public-uri> ...] --password PW [--impi ID] [--k HEX (--op HEX | --opc HEX) --amf HEX]
  rcsd subscriber import <file.csv>        (header: impu,impi,password,k,op,opc,amf)
  rcsd subscriber list [--after IMPI] [--limit N]
  rcsd subscriber show <impi-or-public-uri>
  rcsd subscriber delete <impi-or-public-uri>
  rcsd storage copy --from URL --to URL    (e.g. file:./data to redis://127.0.0.1:6379/0; the target must be empty)
  rcsd config keys                         (every setting, for --KEY and RCSD_KEY)
  rcsd version

Every command takes --config FILE and any setting as --dotted.key VALUE
(e.g. --storage memory: --sip.listen udp://127.0.0.1:5070); environment
variables RCSD_DOTTED_KEY override the file, flags override both.
The subscriber commands use the running server's admin API (http.listen)
when the store is in use by it, and the store directly otherwise.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		var ue usageError
		if errors.As(err, &ue) {
			fmt.Fprintf(os.Stderr, "rcsd: %v\n\n%s", err, usage)
			os.Exit(2)
		}
		fmt.Fprintf(os.Stderr, "rcsd: %v\n", err)
		os.Exit(1)
	}
}

type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func run(ctx context.Context, argv []string, stdout, stderr io.Writer) error {
	a, err := parseArgs(argv)
	if err != nil {
		return usageError{err.Error()}
	}
	if _, ok := a.take("help"); ok || len(a.pos) == 0 {
		fmt.Fprint(stdout, usage)
		return nil
	}
	if _, ok := a.take("h"); ok {
		fmt.Fprint(stdout, usage)
		return nil
	}
	cmd := a.pos[0]
	a.pos = a.pos[1:]
	switch cmd {
	case "serve":
		cfg, err := loadConfig(&a)
		if err != nil {
			return err
		}
		if len(a.pos) > 0 || len(a.flags) > 0 {
			return usageError{fmt.Sprintf("serve: unexpected arguments %v %v", a.pos, a.flags)}
		}
		return serve(ctx, cfg, stderr)
	case "subscriber":
		return subscriberCmd(ctx, &a, stdout)
	case "storage":
		return storageCmd(ctx, &a, stdout)
	case "config":
		if len(a.pos) == 1 && a.pos[0] == "keys" {
			for _, k := range config.Keys() {
				fmt.Fprintln(stdout, k)
			}
			return nil
		}
		return usageError{"config: want `config keys`"}
	case "version":
		fmt.Fprintln(stdout, "rcsd", config.Version)
		return nil
	}
	return usageError{fmt.Sprintf("unknown command %q", cmd)}
}

// loadConfig takes --config and every --dotted.key flag that names a
// setting out of a, leaving command-specific flags.
func loadConfig(a *args) (config.Config, error) {
	path, _ := a.take("config")
	settings := map[string]string{}
	for k, v := range a.flags {
		if config.IsKey(k) {
			settings[k] = v
			delete(a.flags, k)
		}
	}
	return config.Load(path, os.Environ(), settings)
}
