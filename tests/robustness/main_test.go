package robustness

import (
	"testing"

	"github.com/kvorum/kvorum/internal/testbin"
)

// kvorumBin is the server, built once for the package.
var kvorumBin string

func TestMain(m *testing.M) {
	testbin.Main(m, "robustness", testbin.Program{Pkg: "github.com/kvorum/kvorum/cmd/kvorum", Bin: &kvorumBin})
}
