//go:build race

package partition_test

// raceEnabled is set when the race detector is on.
const raceEnabled = true
