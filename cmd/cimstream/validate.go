package main

import "io"

func validateCommand(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	return 2
}
