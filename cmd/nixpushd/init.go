package main

import (
	"context"
	"io"
)

// runInit sets up a cache from nothing (see issue 10). Placeholder.
func runInit(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return usageError{"init: not implemented yet"}
}
