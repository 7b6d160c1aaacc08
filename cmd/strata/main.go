// Command strata manages storage and restore points for virtual machine
// guests. This package only parses flags and prints; the work is done by
// the libraries under storage, snapshot and hvm.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/rs/zerolog"
	"github.com/rs/zerolog/log"
	"github.com/urfave/cli/v2"
	"golang.org/x/term"

	"github.com/strata-vm/strata/hvm/boot"
	"github.com/strata-vm/strata/storage"
	"github.com/strata-vm/strata/storage/catalog"
	"github.com/strata-vm/strata/storage/run"
	"github.com/strata-vm/strata/storage/store"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = ""

// Exit codes, documented in README.md. Each error kind maps to one.
const (
	exitOK           = 0
	exitInternal     = 1
	exitInvalid      = 2
	exitNotFound     = 3
	exitExists       = 4
	exitInUse        = 5
	exitBusy         = 6
	exitPrecondition = 7
	exitNotSupported = 8
	exitDamaged      = 9
	// exitInterrupted: a signal (Ctrl-C, SIGTERM) stopped the operation,
	// which finished or undid what it had begun first.
	exitInterrupted = 130
)

// exitWith ends strata with a given code and no message: snapshot run
// passes on its command's exit code.
type exitWith int

func (e exitWith) Error() string { return "" }

func exitCode(err error) int {
	var ew exitWith
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &ew):
		return int(ew)
	case errors.Is(err, storage.ErrInvalid):
		return exitInvalid
	case errors.Is(err, storage.ErrNotFound):
		return exitNotFound
	case errors.Is(err, storage.ErrExists):
		return exitExists
	case errors.Is(err, storage.ErrInUse):
		return exitInUse
	case errors.Is(err, storage.ErrBusy):
		return exitBusy
	case errors.Is(err, storage.ErrPrecondition):
		return exitPrecondition
	case errors.Is(err, storage.ErrNotSupported):
		return exitNotSupported
	case errors.Is(err, storage.ErrDamaged):
		return exitDamaged
	case errors.Is(err, context.Canceled):
		return exitInterrupted
	}
	var re *run.Error
	if errors.As(err, &re) {
		return exitPrecondition
	}
	return exitInternal
}

func defaultHome() string {
	if os.Geteuid() == 0 {
		return "/var/lib/strata"
	}
	if x := os.Getenv("XDG_DATA_HOME"); x != "" {
		return filepath.Join(x, "strata")
	}
	h, err := os.UserHomeDir()
	if err != nil {
		return filepath.Join(os.TempDir(), "strata")
	}
	return filepath.Join(h, ".local", "share", "strata")
}

func buildVersion() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}

// commands are strata's commands, in the order help lists them, each
// with the function that builds it.
var commands = []struct {
	name string
	make func() *cli.Command
}{
	{"pool", newPoolCommand}, {"volume", newVolumeCommand}, {"guest", newGuestCommand}, {"snapshot", newSnapshotCommand},
	{"golden", newGoldenCommand}, {"clone", newCloneCommand}, {"doctor", newDoctorCommand}, {"iso", newISOCommand},
	{"catalog", newCatalogCommand}, {"completion", newCompletionCommand},
}

// newApp is strata's command line, every command in it.
func newApp() *cli.App {
	app := newAppWithout()
	for _, c := range commands {
		app.Commands = append(app.Commands, c.make())
	}
	return app
}

// newAppFor is the command line to run args with: when args name a
// command (after the global flags), the app holds that command only, as
// building all of them (some 170 flags) costs every run about 0.2 ms;
// else (help, a misspelt name) all of them.
func newAppFor(args []string) *cli.App {
	app := newAppWithout()
	for i := 1; i < len(args); {
		a := args[i]
		if a == "--" || a == "-h" || a == "--help" || a == "-help" {
			break
		}
		if strings.HasPrefix(a, "-") {
			n, _ := flagWidth(app.Flags, a)
			i += n
			continue
		}
		for _, c := range commands {
			if c.name == a {
				app.Commands = []*cli.Command{c.make()}
				return app
			}
		}
		break
	}
	return newApp()
}

// newAppWithout is the app with its global flags and no command.
func newAppWithout() *cli.App {
	return &cli.App{
		Name:    "strata",
		Usage:   "storage and restore points for virtual machine guests",
		Version: buildVersion(),
		// Not shown anywhere; unset, urfave/cli would stat the
		// executable at every run to fill it in.
		Compiled: time.Unix(0, 0),
		Description: "strata keeps the storage of Xen and KVM guests: sparse raw and qcow2 volumes in pools,\n" +
			"install media, HVM guest definitions (imported from xm/xl or libvirt, rendered for xl, libvirt\n" +
			"and QEMU), restore points of all of a guest's disks that roll back to any point, and golden\n" +
			"images cloned into new guests. It records them in a catalog in its state home (--home).\n" +
			"Exit codes: 0 ok, 1 internal, 2 invalid argument, 3 not found, 4 already exists, 5 in use,\n" +
			"6 busy, 7 failed precondition, 8 not supported, 9 catalog damaged or missing (see strata catalog);\n" +
			"130 interrupted by a signal (after finishing or undoing); snapshot run exits with its command's code.",
		// Repeated flags, not commas, make lists: a --nic spec has commas.
		DisableSliceFlagSeparator: true,
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "home", Usage: "state home (catalog and default pool)", EnvVars: []string{"STRATA_HOME"}, Value: defaultHome()},
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "result format: table or json (and yaml for guest show)", Value: "table"},
			&cli.StringFlag{Name: "log-level", Usage: "debug, info, warn or error", Value: "info"},
			&cli.StringFlag{Name: "log-format", Usage: "console or json", Value: "console"},
			&cli.DurationFlag{Name: "lock-timeout", Usage: "how long to wait for another strata process holding the catalog", Value: 30 * time.Second, EnvVars: []string{"STRATA_LOCK_TIMEOUT"}},
		}, sharedCatalogFlags()...),
		Before:         setup,
		OnUsageError:   usageError,
		ExitErrHandler: func(*cli.Context, error) {},
		Metadata:       map[string]any{stateKey: &appState{}},
	}
}

func usageError(_ *cli.Context, err error, _ bool) error {
	return storage.Errorf(storage.ErrInvalid, "%v (see --help)", err)
}

func setup(c *cli.Context) error {
	level, err := zerolog.ParseLevel(c.String("log-level"))
	if err != nil || c.String("log-level") == "" {
		return storage.Errorf(storage.ErrInvalid, "invalid --log-level %q: use debug, info, warn or error", c.String("log-level"))
	}
	zerolog.SetGlobalLevel(level)
	switch c.String("log-format") {
	case "json":
		log.Logger = zerolog.New(os.Stderr).With().Timestamp().Logger()
	case "console":
		log.Logger = zerolog.New(zerolog.ConsoleWriter{Out: os.Stderr, NoColor: !term.IsTerminal(int(os.Stderr.Fd())), TimeFormat: time.TimeOnly}).With().Timestamp().Logger()
	default:
		return storage.Errorf(storage.ErrInvalid, "invalid --log-format %q: use console or json", c.String("log-format"))
	}
	switch c.String("output") {
	case "table", "json", "yaml":
	default:
		return storage.Errorf(storage.ErrInvalid, "invalid --output %q: use table or json (yaml: guest show)", c.String("output"))
	}
	if c.String("home") == "" {
		return storage.Errorf(storage.ErrInvalid, "invalid --home \"\": give a directory")
	}
	setupSharedCatalog(c)
	return nil
}

// appState is what one run of strata keeps across the steps of its
// command: it lives in the cli.App (Metadata), not in package variables,
// so a second app in one process (a test, the man page builder) starts
// clean.
type appState struct {
	// opLock is this process's shared hold on the state home (see
	// store.OpLock); doctor --repair and catalog restores trade it for an
	// exclusive one.
	opLock *store.OpLock
	// afterDash is the argv after the first "--" that ends strata's own
	// arguments (not a flag's value), as given: the command of snapshot
	// run, whatever "--" it holds itself. nil when there is none.
	afterDash []string
	// catalog is the catalog this process opened, closed (its etcd lease
	// revoked, so its locks go at once) when the command ends.
	catalog *catalog.Catalog
	// drivers are the host's boot drivers (see drivers), made once.
	drivers *boot.Set
}

const stateKey = "strata"

func stateOf(app *cli.App) *appState { return app.Metadata[stateKey].(*appState) }

// appOf is the state of the app running c.
func appOf(c *cli.Context) *appState { return stateOf(c.App) }

// withUsageErrors makes every command's flag errors an invalid-argument
// error (exit code 2) with one line of text, not a help page on stdout,
// and keeps help to what is true and useful: a switch is off unless given,
// so "(default: false)" is not printed.
func withUsageErrors(cmds []*cli.Command) {
	for _, c := range cmds {
		c.OnUsageError = usageError
		for _, f := range c.Flags {
			if b, ok := f.(*cli.BoolFlag); ok && !b.Value && b.DefaultText == "" {
				b.DisableDefaultText = true
			}
		}
		// A command that takes names takes "h" and "help" as names (a
		// guest called h): only commands with subcommands get urfave/cli's
		// help subcommand; --help works everywhere.
		if len(c.Subcommands) == 0 {
			c.HideHelpCommand = true
		}
		withUsageErrors(c.Subcommands)
	}
}

func main() {
	// Everything strata creates (catalog, images) is readable by its owner
	// only: images hold guests' data.
	syscall.Umask(0o077)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	app := newAppFor(os.Args)
	withUsageErrors(app.Commands)
	if len(os.Args) > 1 && os.Args[1] == completeCommand {
		complete(app, os.Stdout, os.Args[2:])
		stop()
		return
	}
	withFixedFlagNames(app)
	err := app.RunContext(ctx, interspersed(app, os.Args))
	stop()
	if cat := stateOf(app).catalog; cat != nil {
		cat.Close()
	}
	if err != nil && strings.HasPrefix(err.Error(), "No help topic for ") {
		// urfave/cli's answer to an unknown command or subcommand.
		err = storage.Errorf(storage.ErrInvalid, "unknown command %s: see strata --help", strings.TrimPrefix(err.Error(), "No help topic for "))
	}
	if err != nil && strings.HasPrefix(err.Error(), "Required flag") {
		// urfave/cli's own check of Required flags.
		err = storage.Errorf(storage.ErrInvalid, "%v (see --help)", err)
	}
	if err != nil && err.Error() != "" {
		fmt.Fprintf(os.Stderr, "strata: %v\n", err)
	}
	os.Exit(exitCode(err))
}
