package snapshot

import "github.com/strata-vm/strata/storage"

// SplitRunArgv reads the command line of `strata snapshot run`: the target
// and the command to run between its points.
//
// args are the command's positional arguments as the flag parser left
// them: the target (none with --volume), perhaps the "--" itself (a parser
// drops it when no positional argument comes before it), then the
// command. command is everything after the first "--" that ended strata's
// own arguments, as given (it may hold "--" itself); nil when there was
// none. volume is --volume's value, nil when the flag was not given.
func SplitRunArgv(args, command []string, volume *string) (TargetRef, []string, error) {
	if command == nil {
		return TargetRef{}, nil, storage.Errorf(storage.ErrInvalid, "put the command after --, e.g. strata snapshot run GUEST -- apt-get upgrade -y")
	}
	before := args[:max(0, len(args)-len(command))]
	if n := len(before); n > 0 && before[n-1] == "--" {
		before = before[:n-1]
	}
	if volume != nil {
		if len(before) != 0 {
			return TargetRef{}, nil, storage.Errorf(storage.ErrInvalid, "snapshot run --volume takes no GUEST before --")
		}
		return TargetRef{Name: *volume, Volume: true}, command, nil
	}
	if len(before) != 1 {
		return TargetRef{}, nil, storage.Errorf(storage.ErrInvalid, "snapshot run takes GUEST before -- (or --volume NAME)")
	}
	return TargetRef{Name: before[0]}, command, nil
}
