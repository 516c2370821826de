package pairs

// c.go uses a.go, and a.go does not use c.go: a one-way dependency.
func first() A { return A{n: 1} }
