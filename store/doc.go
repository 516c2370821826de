// Package store answers questions about the local Nix store: path info
// (NarHash, NarSize, references, deriver, signatures, CA), closures, and which
// paths were registered since a point in time.
//
// Two backends hide behind Store: the Nix SQLite database, read-only (fast, and
// the only cheap way to find paths by registration time), and `nix path-info
// --json` (works wherever Nix runs, e.g. without read access to the DB).
//
// It only reads: it never writes to the Nix store or its database.
package store
