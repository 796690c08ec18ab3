package main

import (
	"fmt"
	"strings"
)

// args are a command line split into positionals and --flags. Flags may
// come before or after positionals; "--key value" and "--key=value" are
// both accepted; "--" ends flags.
type args struct {
	pos   []string
	flags map[string]string
}

// boolFlags take no value.
var boolFlags = map[string]bool{"help": true, "h": true, "json": true}

func parseArgs(in []string) (args, error) {
	a := args{flags: map[string]string{}}
	for i := 0; i < len(in); i++ {
		s := in[i]
		if s == "--" {
			a.pos = append(a.pos, in[i+1:]...)
			break
		}
		if !strings.HasPrefix(s, "-") || s == "-" {
			a.pos = append(a.pos, s)
			continue
		}
		name := strings.TrimLeft(s, "-")
		val, hasVal := "", false
		if k, v, ok := strings.Cut(name, "="); ok {
			name, val, hasVal = k, v, true
		}
		if boolFlags[name] {
			if !hasVal {
				val = "true"
			}
		} else if !hasVal {
			if i+1 >= len(in) {
				return a, fmt.Errorf("flag --%s needs a value", name)
			}
			i++
			val = in[i]
		}
		if _, dup := a.flags[name]; dup {
			return a, fmt.Errorf("flag --%s given twice", name)
		}
		a.flags[name] = val
	}
	return a, nil
}

// take removes and returns a flag.
func (a *args) take(name string) (string, bool) {
	v, ok := a.flags[name]
	delete(a.flags, name)
	return v, ok
}
