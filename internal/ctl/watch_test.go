package ctl

import (
	"fmt"
	"testing"
)

func TestWatchArgumentsFollowEtcdctl(t *testing.T) {
	for _, tc := range []struct {
		args             []string
		dash             int
		flags            bool
		envKey, envRange string
		watch, exec      string
		err              error
	}{
		{args: []string{"k"}, dash: -1, watch: "[k]", exec: "[]"},
		{args: []string{"k", "e"}, dash: -1, watch: "[k e]", exec: "[]"},
		{args: []string{"k", "echo", "hi"}, dash: 1, watch: "[k]", exec: "[echo hi]"},
		{args: []string{"k"}, dash: 1, err: errBadArgsNumSeparator},
		{args: nil, dash: -1, err: errBadArgsNum},
		{args: nil, dash: -1, flags: true, watch: "[]", exec: "[]"}, // refused later, once the client exists
		{args: nil, dash: -1, envKey: "k", envRange: "m", watch: "[k m]", exec: "[]"},
		{args: []string{"x"}, dash: -1, envKey: "k", err: errBadArgsNumConflictEnv},
		{args: []string{"echo"}, dash: 0, envKey: "k", watch: "[k]", exec: "[echo]"},
		{args: []string{"x", "echo"}, dash: 1, envKey: "k", err: errBadArgsNumConflictEnv},
	} {
		w, e, err := splitWatchArgs(tc.args, tc.dash, tc.flags, tc.envKey, tc.envRange)
		if err != tc.err || (err == nil && (fmt.Sprint(w) != tc.watch || fmt.Sprint(e) != tc.exec)) {
			t.Errorf("splitWatchArgs(%q, dash %d, env %q %q) = %v, %v, %v; want %s, %s, %v",
				tc.args, tc.dash, tc.envKey, tc.envRange, w, e, err, tc.watch, tc.exec, tc.err)
		}
	}
}

func TestInteractiveWatchLineSetsItsOwnFlags(t *testing.T) {
	o, w, e, err := parseWatchLine([]string{"--rev", "5", "--prefix", "k", "--", "echo", "--x"}, watchOptions{progressNotify: true}, "", "")
	if err != nil || o.rev != 5 || !o.prefix || o.prevKV || !o.progressNotify || fmt.Sprint(w) != "[k]" || fmt.Sprint(e) != "[echo --x]" {
		t.Errorf("parseWatchLine = %+v %v %v %v", o, w, e, err)
	}
	if _, _, _, err := parseWatchLine([]string{"k", "--"}, watchOptions{}, "", ""); err != errBadArgsNumSeparator {
		t.Errorf("trailing --: %v, want %v", err, errBadArgsNumSeparator)
	}
	if _, _, _, err := parseWatchLine([]string{"--rev"}, watchOptions{}, "", ""); err == nil {
		t.Error("--rev without value accepted")
	}
	if _, w, _, err := parseWatchLine(nil, watchOptions{}, "k", ""); err != nil || fmt.Sprint(w) != "[k]" {
		t.Errorf("key from the environment: %v %v", w, err)
	}
}
