//go:build race

package launcher

// raceEnabled says the race detector is on: allocations are not counted.
const raceEnabled = true
