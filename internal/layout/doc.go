// Package layout owns the repository's layout rules and checks them in
// its tests: inside each package, no two files use each other's
// declarations both ways, so that a file holds one backend's or one
// concern's code and can be read (and moved) on its own.
//
// It has no code of its own; see layout_test.go.
package layout
