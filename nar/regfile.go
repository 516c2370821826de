package nar

import "errors"

// errReplaced says a name no longer points at the file that was stat'ed:
// what openRegular (regfile_unix.go, regfile_other.go) returns then.
var errReplaced = errors.New("replaced while being archived")
