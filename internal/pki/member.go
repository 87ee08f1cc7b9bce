package pki

import (
	"fmt"
	"net"
	"regexp"
	"slices"
	"strings"
)

// Member is a cluster member as its certificates name it: the common name
// and the subject alternative names clients and peers dial it by.
type Member struct {
	Name     string
	IPs      []net.IP
	DNSNames []string
}

// localhostIPs and localhostName are the SANs WithLocalhost adds.
var localhostIPs = []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}

const localhostName = "localhost"

// WithLocalhost returns m with 127.0.0.1, ::1 and localhost added (once).
func (m Member) WithLocalhost() Member {
	out := Member{Name: m.Name, IPs: slices.Clone(m.IPs), DNSNames: slices.Clone(m.DNSNames)}
	for _, ip := range localhostIPs {
		if !slices.ContainsFunc(out.IPs, ip.Equal) {
			out.IPs = append(out.IPs, ip)
		}
	}
	if !slices.Contains(out.DNSNames, localhostName) {
		out.DNSNames = append(out.DNSNames, localhostName)
	}
	return out
}

// namePattern is what a member or client name may look like: it becomes a
// file or directory name, so no separators and no dot-only names.
var namePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._@-]*$`)

// dnsPattern accepts host names and a leading wildcard label.
var dnsPattern = regexp.MustCompile(`^(\*\.)?([A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$`)

// CheckName reports whether name can be a member or client name.
func CheckName(kind, name string) error {
	if !namePattern.MatchString(name) {
		return fmt.Errorf("%s name %q: use letters, digits, '.', '_', '@' and '-', starting with a letter or digit", kind, name)
	}
	return nil
}

// ParseMember reads "NAME=ADDR,ADDR,..." where each ADDR is an IP address
// or a DNS name. Addresses may be left out ("NAME" or "NAME=") when
// localhost names are added later.
func ParseMember(s string) (Member, error) {
	name, addrs, _ := strings.Cut(s, "=")
	if err := CheckName("member", name); err != nil {
		return Member{}, fmt.Errorf("member %q: %w (the form is NAME=IP,DNS,...)", s, err)
	}
	m := Member{Name: name}
	if addrs == "" {
		return m, nil
	}
	for _, a := range strings.Split(addrs, ",") {
		a = strings.TrimSpace(a)
		if ip := net.ParseIP(a); ip != nil {
			if !slices.ContainsFunc(m.IPs, ip.Equal) {
				m.IPs = append(m.IPs, ip)
			}
			continue
		}
		if len(a) > 253 || !dnsPattern.MatchString(a) {
			return Member{}, fmt.Errorf("member %q: %q is neither an IP address nor a DNS name", s, a)
		}
		if !slices.Contains(m.DNSNames, a) {
			m.DNSNames = append(m.DNSNames, a)
		}
	}
	return m, nil
}
