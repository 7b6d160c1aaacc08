package main

import (
	"github.com/urfave/cli/v2"

	"github.com/strata-vm/strata/hvm/boot"
)

// drivers returns the boot drivers of this host; none probes anything
// until asked.
func drivers(c *cli.Context) *boot.Set {
	if s, ok := c.App.Metadata["drivers"].(*boot.Set); ok {
		return s
	}
	s := boot.NewSet()
	if c.App.Metadata == nil {
		c.App.Metadata = map[string]any{}
	}
	c.App.Metadata["drivers"] = s
	return s
}
