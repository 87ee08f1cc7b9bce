//go:build !race

package testbin

// raceEnabled tells whether this binary was built with the race detector.
const raceEnabled = false
