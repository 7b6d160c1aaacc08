package main

import "github.com/urfave/cli/v2"

// isoCommand is filled in by the media work (issue 6).
func isoCommand() *cli.Command {
	return &cli.Command{Name: "iso", Usage: "manage install media (ISO images)", Hidden: true}
}
