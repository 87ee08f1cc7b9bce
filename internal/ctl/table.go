package ctl

import (
	"fmt"
	"io"
	"math"
	"strings"
	"unicode/utf8"
)

// table is what the table format shows: column titles and rows of cells.
// The simple format of the same commands prints the rows comma-separated.
type table struct {
	header []string
	rows   [][]string
}

// writeTable draws the -w table output: a box of light box-drawing lines,
// headers upper-cased (with '_' read as a space) and centred, cells
// right-aligned, one space of padding on each side. A table without rows
// has no line under the header. Cells that contain newlines take several
// lines.
//
// This is the layout etcdctl v3.7 gets from tablewriter v1 with its
// defaults and right-aligned rows. Widths count runes, which equals the
// display width for everything these tables hold (IDs, URLs, numbers,
// member names in ASCII).
func writeTable(w io.Writer, t table) {
	header, rows := t.header, t.rows
	hdr := make([]string, len(header))
	widths := make([]int, len(header))
	for i, h := range header {
		hdr[i] = tableTitle(h)
		widths[i] = textWidth(hdr[i])
	}
	split := make([][][]string, len(rows))
	for r, row := range rows {
		split[r] = make([][]string, len(header))
		for c := range header {
			var cell string
			if c < len(row) {
				cell = row[c]
			}
			lines := strings.Split(cell, "\n")
			split[r][c] = lines
			for _, l := range lines {
				widths[c] = max(widths[c], textWidth(l))
			}
		}
	}

	var b strings.Builder
	rule := func(left, mid, right string) {
		b.WriteString(left)
		for i, wd := range widths {
			if i > 0 {
				b.WriteString(mid)
			}
			b.WriteString(strings.Repeat("─", wd+2))
		}
		b.WriteString(right)
		b.WriteByte('\n')
	}
	line := func(cells []string, align func(s string, width int) string) {
		b.WriteString("│")
		for i, wd := range widths {
			b.WriteString(" ")
			b.WriteString(align(cells[i], wd))
			b.WriteString(" │")
		}
		b.WriteByte('\n')
	}

	rule("┌", "┬", "┐")
	line(hdr, padCenter)
	if len(rows) > 0 {
		rule("├", "┼", "┤")
	}
	for _, row := range split {
		height := 0
		for _, lines := range row {
			height = max(height, len(lines))
		}
		for l := range height {
			cells := make([]string, len(row))
			for c, lines := range row {
				if l < len(lines) {
					cells[c] = lines[l]
				}
			}
			line(cells, padLeft)
		}
	}
	rule("└", "┴", "┘")
	_, _ = io.WriteString(w, b.String())
}

// tableTitle formats a header: '_' becomes a space, a '.' not between
// digits or spaces becomes a space, the result is trimmed and upper-cased.
func tableTitle(s string) string {
	rs := []rune(s)
	digitOrSpace := func(r rune) bool { return r == ' ' || (r >= '0' && r <= '9') }
	for i, r := range rs {
		switch r {
		case '_':
			rs[i] = ' '
		case '.':
			if (i > 0 && !digitOrSpace(rs[i-1])) || (i < len(rs)-1 && !digitOrSpace(rs[i+1])) {
				rs[i] = ' '
			}
		}
	}
	t := strings.TrimSpace(string(rs))
	if t == "" && s != "" {
		t = " "
	}
	return strings.ToUpper(t)
}

func textWidth(s string) int { return utf8.RuneCountInString(s) }

// padCenter centres s in width columns; an odd leftover space goes right.
func padCenter(s string, width int) string {
	gap := width - textWidth(s)
	if gap <= 0 {
		return s
	}
	left := gap / 2
	return strings.Repeat(" ", left) + s + strings.Repeat(" ", gap-left)
}

// padLeft right-aligns s in width columns.
func padLeft(s string, width int) string {
	gap := width - textWidth(s)
	if gap <= 0 {
		return s
	}
	return strings.Repeat(" ", gap) + s
}

// humanBytes formats a byte count in SI units the way etcdctl's tables do
// ("20 kB", "2.1 GB", "7 B"): one decimal below 10 units, none above, the
// value rounded half up to a tenth first.
func humanBytes(n uint64) string {
	if n < 10 {
		return fmt.Sprintf("%d B", n)
	}
	units := []string{"B", "kB", "MB", "GB", "TB", "PB", "EB"}
	e := math.Floor(math.Log(float64(n)) / math.Log(1000))
	val := math.Floor(float64(n)/math.Pow(1000, e)*10+0.5) / 10
	if val < 10 {
		return fmt.Sprintf("%.1f %s", val, units[int(e)])
	}
	return fmt.Sprintf("%.0f %s", val, units[int(e)])
}
