package auth

import (
	"testing"

	"go.etcd.io/etcd/api/v3/authpb"
)

func perm(t authpb.Permission_Type, key, end string) *authpb.Permission {
	p := &authpb.Permission{PermType: t, Key: []byte(key)}
	if end != "" {
		p.RangeEnd = []byte(end)
	}
	return p
}

func TestPermittedCoversRangesByTheUnionOfPermissions(t *testing.T) {
	roles := []*authpb.Role{
		{Name: []byte("a"), KeyPermission: []*authpb.Permission{
			perm(authpb.Permission_READ, "foo", ""),           // one key
			perm(authpb.Permission_READWRITE, "app/", "app0"), // prefix app/
			perm(authpb.Permission_WRITE, "logs/", "\x00"),    // from logs/ on
		}},
		{Name: []byte("b"), KeyPermission: []*authpb.Permission{
			perm(authpb.Permission_READ, "m", "p"),
			perm(authpb.Permission_READ, "p", "r"), // adjacent: together [m, r)
		}},
	}
	for _, tc := range []struct {
		name     string
		key, end string
		write    bool
		want     bool
	}{
		{"the one key", "foo", "", false, true},
		{"the one key, writing", "foo", "", true, false},
		{"another key", "fop", "", false, false},
		{"a key under the prefix", "app/x", "", true, true},
		{"the whole prefix", "app/", "app0", false, true},
		{"beyond the prefix", "app/", "app1", false, false},
		{"everything from logs/ on, writing", "logs/", "\x00", true, true},
		{"everything from logs/ on, reading", "logs/", "\x00", false, false},
		{"a range over two adjacent permissions", "n", "q", false, true},
		{"a range past them", "n", "s", false, false},
		{"all keys", "\x00", "\x00", false, false},
	} {
		end := []byte(tc.end)
		if tc.end == "" {
			end = nil
		}
		if got := permitted(roles, Range{Key: []byte(tc.key), End: end}, tc.write); got != tc.want {
			t.Errorf("%s: permitted(%q, %q, write=%v) = %v, want %v", tc.name, tc.key, tc.end, tc.write, got, tc.want)
		}
	}
}
