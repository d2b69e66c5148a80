//go:build race

package main

// raceEnabled builds the vmre binary under test with -race too.
const raceEnabled = true
