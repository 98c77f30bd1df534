//go:build race

package cim_test

const raceEnabled = true
