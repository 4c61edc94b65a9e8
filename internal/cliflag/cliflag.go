// Package cliflag parses the flags of a liveroom command. It differs from
// flag.FlagSet.Parse in what a person sees: -h prints the command's usage
// as before, but a mistake answers with one short error (the closest flag
// when a name was mistyped) instead of the whole usage, which for serve runs
// to well over a hundred lines and buries the mistake.
package cliflag

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
)

// Parse parses args into fs. For -h or -help it prints fs's usage to
// fs.Output() and returns flag.ErrHelp. For a bad flag it prints nothing and
// returns a short error naming the command, the mistake, the closest flag
// when the name was mistyped, and where the flags are listed. fs should use
// flag.ContinueOnError.
func Parse(fs *flag.FlagSet, args []string) error {
	out, usage := fs.Output(), fs.Usage
	// flag prints the error and the whole usage on any mistake; keep both
	// for -h only.
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	err := fs.Parse(args)
	fs.SetOutput(out)
	fs.Usage = usage
	switch {
	case err == nil:
		return nil
	case errors.Is(err, flag.ErrHelp):
		printUsage(fs)
		return flag.ErrHelp
	}
	return explain(fs, err)
}

func printUsage(fs *flag.FlagSet) {
	if fs.Usage != nil {
		fs.Usage()
		return
	}
	fmt.Fprintf(fs.Output(), "Usage of %s:\n", fs.Name())
	fs.PrintDefaults()
}

// notDefined is the start of flag's error for an unknown flag.
const notDefined = "flag provided but not defined: -"

func explain(fs *flag.FlagSet, err error) error {
	cmd := "liveroom " + fs.Name()
	msg := err.Error()
	if name, ok := strings.CutPrefix(msg, notDefined); ok {
		name = strings.TrimLeft(name, "-")
		if best := Closest(fs, name); best != "" {
			return fmt.Errorf("%s: unknown flag --%s: did you mean --%s? (%s -h lists the flags)", fs.Name(), name, best, cmd)
		}
		return fmt.Errorf("%s: unknown flag --%s (%s -h lists the flags)", fs.Name(), name, cmd)
	}
	return fmt.Errorf("%s: %s (%s -h lists the flags)", fs.Name(), msg, cmd)
}

// Closest returns the flag of fs whose name is nearest to name, or "" when
// none is near enough to be what was meant: an edit distance of at most a
// third of the name (at least one edit), or one name holding the other.
func Closest(fs *flag.FlagSet, name string) string {
	best, bestD := "", -1
	fs.VisitAll(func(f *flag.Flag) {
		d := distance(name, f.Name)
		limit := max(1, len(name)/3)
		if d > limit && !(len(name) >= 3 && strings.Contains(f.Name, name)) {
			return
		}
		if bestD < 0 || d < bestD {
			best, bestD = f.Name, d
		}
	})
	return best
}

// distance is the Levenshtein distance between a and b, counting an
// exchange of two neighbouring characters (adr/adrr/dar) as one edit.
func distance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev2 := make([]int, len(rb)+1)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && ra[i-1] == rb[j-2] && ra[i-2] == rb[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(rb)]
}
