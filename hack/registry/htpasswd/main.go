// Command htpasswd prints one line of an htpasswd file, "user:bcrypt-hash", for the user
// and password given on its standard input (one line each), so neither is a command-line
// argument. The registry's htpasswd auth accepts bcrypt only; this is the same bcrypt package
// the registry verifies with, so no other tool (apache2-utils, a Python package) is needed.
package main

import (
	"bufio"
	"fmt"
	"os"

	"golang.org/x/crypto/bcrypt"
)

func main() {
	in := bufio.NewScanner(os.Stdin)
	var lines []string
	for in.Scan() {
		lines = append(lines, in.Text())
	}
	if len(lines) != 2 || lines[0] == "" || lines[1] == "" {
		fmt.Fprintln(os.Stderr, "usage: printf 'user\\npassword\\n' | htpasswd")
		os.Exit(2)
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(lines[1]), bcrypt.DefaultCost)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("%s:%s\n", lines[0], hash)
}
