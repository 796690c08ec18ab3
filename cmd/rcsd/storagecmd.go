package main

import (
	"context"
	"fmt"
	"io"

	"rcsd/storage/backends"
	"rcsd/storage/migrate"
)

// storageCmd is `rcsd storage copy --from URL --to URL`: it moves a whole
// state between backends (the embedded store to Redis when a deployment
// grows, and back). rcsd must not be running on either store meanwhile:
// a file: store is locked by a running rcsd, and a copy of a live Redis
// would miss what changes during it.
func storageCmd(ctx context.Context, a *args, out io.Writer) error {
	if len(a.pos) != 1 || a.pos[0] != "copy" {
		return usageError{"storage: want copy --from URL --to URL"}
	}
	from, ok1 := a.take("from")
	to, ok2 := a.take("to")
	if !ok1 || !ok2 || from == "" || to == "" {
		return usageError{"storage copy: want --from URL --to URL"}
	}
	if err := noFlagsLeft(a); err != nil {
		return err
	}
	src, err := backends.Open(ctx, from)
	if err != nil {
		return fmt.Errorf("storage copy: source: %w", err)
	}
	defer src.Close()
	dst, err := backends.Open(ctx, to)
	if err != nil {
		return fmt.Errorf("storage copy: target: %w", err)
	}
	c, err := migrate.Copy(ctx, src, dst)
	if cerr := dst.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("storage copy: closing the target: %w", cerr)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "copied %d subscribers, %d bindings of %d public identities, %d stored messages\n", c.Subscribers, c.Bindings, c.AORs, c.Messages)
	return nil
}
