package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/schakel-nl/schakel/network"
)

// replicaFlags adds `network up`'s flags for running each node as
// replicas on PostgreSQL.
func replicaFlags(up *cobra.Command, opts *network.Options) {
	up.Flags().IntVar(&opts.Replicas, "replicas", 0, "run each node as this many `schakel node` processes behind a HAProxy (implies --processes; needs --postgres and haproxy)")
	up.Flags().StringVar(&opts.Postgres, "postgres", "", "PostgreSQL URL the nodes keep their state in, a schema per node (dropped and created again at every start)")
	up.Flags().StringVar(&opts.PostgresSchemaPrefix, "postgres-schema-prefix", "", "prefix of each node's schema (default "+network.DefaultSchemaPrefix+" with --replicas)")
}

// replicasOption checks the replica flags: --replicas implies --processes
// and needs --postgres; --postgres alone is for the one-process network.
func replicasOption(opts *network.Options, processes *bool) error {
	if opts.Replicas < 0 {
		return fmt.Errorf("--replicas %d: give 1 or more", opts.Replicas)
	}
	if opts.Replicas == 0 {
		if *processes && opts.Postgres != "" {
			return errors.New("--postgres with --processes needs --replicas N")
		}
		return nil
	}
	if opts.Postgres == "" {
		return errors.New("--replicas needs --postgres URL: a node's replicas share its state in PostgreSQL")
	}
	*processes = true
	return nil
}

// runAcrossReplicas runs the Direct Pull after the Notified Pull and shows,
// from the balancers' logs, which replicas the steps landed on.
func runAcrossReplicas(ctx context.Context, nw *network.Network) error {
	if _, err := nw.DirectPull(ctx); err != nil {
		return fmt.Errorf("direct pull failed: %w", err)
	}
	// The balancer logs an HTTP request just after its answer went out.
	time.Sleep(200 * time.Millisecond)
	t, err := nw.ReplicaTraffic()
	if err != nil {
		return fmt.Errorf("balancer logs: %w", err)
	}
	nw.PrintReplicaTraffic(t)
	return nil
}
