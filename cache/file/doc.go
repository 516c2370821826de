// Package file is the file:// cache backend: a binary cache in a local
// directory, laid out as `nix copy --to file://DIR` makes and reads it.
// Objects appear by rename, never partly written, and Barrier makes
// everything written before it durable with one filesystem sync per
// round, however many writers wait.
//
// It knows files and directories, nothing of Nix or of what the objects
// hold.
package file
