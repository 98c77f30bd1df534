//go:build race

package ingress_test

const raceEnabled = true
