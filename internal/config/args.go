package config

import (
	"fmt"
	"strings"
)

// parseArgs reads the command line with the syntax of Go's flag package,
// which etcd uses: one or two dashes, the value after "=" or as the next
// argument, and a bool flag alone meaning true. It does not use the flag
// package itself only to word its errors for people. A flag given twice keeps
// its first position and its last value.
func parseArgs(args []string) ([]setting, error) {
	var out []setting
	index := map[string]int{}
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			if i+1 < len(args) {
				return nil, fmt.Errorf("unexpected argument %q: kvorum takes only flags, such as --name=infra0", args[i+1])
			}
			break
		}
		if len(a) < 2 || a[0] != '-' {
			return nil, fmt.Errorf("unexpected argument %q: kvorum takes only flags, such as --name=infra0", a)
		}
		name := strings.TrimPrefix(a[1:], "-")
		if name == "" || name[0] == '-' || name[0] == '=' {
			return nil, fmt.Errorf("bad flag syntax %q: write --flag=value", a)
		}
		value, hasValue := "", false
		if j := strings.IndexByte(name, '='); j >= 0 {
			name, value, hasValue = name[:j], name[j+1:], true
		}
		if name == "h" || name == "help" {
			return nil, ErrHelp
		}
		k, ok := lookupKind(name)
		if !ok {
			return nil, fmt.Errorf("unknown flag: --%s (see --help)", name)
		}
		if !hasValue {
			switch {
			case k == kindBool || k == kindRetired:
				value = "true"
			case i+1 < len(args):
				i++
				value = args[i]
			default:
				return nil, fmt.Errorf("flag --%s needs a value: --%s=VALUE", name, name)
			}
		}
		s := setting{name: name, value: value, origin: "--" + name, typed: true}
		if j, ok := index[name]; ok {
			out[j] = s
			continue
		}
		index[name] = len(out)
		out = append(out, s)
	}
	return out, nil
}
