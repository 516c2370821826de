package lifecycle

import "fmt"

// plural writes "1 root", "2 roots".
func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}
