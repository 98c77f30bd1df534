// Command cimstream carries CIM messages between contact-center channel connectors and the Customer
// Channel Manager over Kafka. Run `cimstream --help` for the commands.
package main

import (
	"io"
	"os"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// run is main without the process exit, so tests can call it: it returns the exit status (0 success,
// 1 failure, 2 usage error; validate and routes document their own).
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	root := newRootCommand(stdin, stdout, stderr)
	root.SetArgs(args)
	cmd, err := root.ExecuteC()
	return exitCode(cmd, err, stderr)
}
