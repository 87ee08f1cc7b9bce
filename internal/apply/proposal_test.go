package apply

import "testing"

// TagSize bounds what TagTerm appends, so that a buffer with that much
// spare capacity is tagged in place.
func TestTagSizeBoundsTheTag(t *testing.T) {
	for _, term := range []uint64{0, 1, 1 << 35, ^uint64(0)} {
		if n := len(TagTerm(nil, term)); n > TagSize {
			t.Errorf("TagTerm appends %d bytes for term %d, TagSize is %d", n, term, TagSize)
		}
	}
	data := make([]byte, 5, 5+TagSize)
	if tagged := TagTerm(data, ^uint64(0)); &tagged[0] != &data[0] {
		t.Error("TagTerm reallocated a buffer with TagSize bytes to spare")
	}
}
