// Command schakel is the Schakel GtK: the node, its development PKI, demo
// data, and a complete local Twiin network.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/schakel-nl/schakel/internal/gctune"

	"github.com/spf13/cobra"
)

func main() {
	gctune.Apply()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := newRootCommand().ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "schakel:", err)
		os.Exit(1)
	}
}

// globalFlags are shared by every command.
type globalFlags struct {
	logLevel  string
	logFormat string
}

func newRootCommand() *cobra.Command {
	g := &globalFlags{}
	root := &cobra.Command{
		Use:           "schakel",
		Short:         "Schakel: a Validated Twiin Node (GtK) for Dutch health data exchange",
		SilenceErrors: true,
	}
	root.PersistentFlags().StringVar(&g.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	root.PersistentFlags().StringVar(&g.logFormat, "log-format", "text", "log format: text or json")
	root.AddCommand(
		newNetworkCommand(g),
		newNodeCommand(g),
		newDemoDataCommand(g),
		newImportCommand(),
		newPKICommand(),
		newAuditCommand(),
		newConsentCommand(),
		newLocalizationCommand(),
		newLogcentralCommand(g),
		newScanCommand(),
		newAddressbookCommand(),
		newValidateCommand(g),
		newBSNCommand(g),
		newAdminCommand(),
		newMonitorCommand(g),
		newPACSCommand(g),
		newIdentityIssuerCommand(g),
	)
	return root
}

func (g *globalFlags) logger() (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(g.logLevel)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch g.logFormat {
	case "text":
		return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
	}
	return nil, fmt.Errorf("--log-format must be text or json, not %q", g.logFormat)
}
