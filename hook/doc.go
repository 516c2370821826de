// Package hook is how the nixpushd commands reach the running daemon:
// `nixpushd hook` (Nix's post-build-hook), `nixpushd push --via-daemon` and
// `nixpushd status`. It holds the socket protocol — the daemon's side,
// Serve, and the clients' side, Push and Status — and the spool directory
// where the hook leaves a build's paths while the daemon cannot be reached
// (WriteSpool, DrainSpool). Deliver is the hook command's logic.
//
// # The socket protocol
//
// The daemon listens on a Unix stream socket (DefaultSocket). A client
// connects, sends one request line, reads one reply line, and the daemon
// closes the connection.
//
// A request is a verb and its arguments separated by single spaces, ended
// by "\n", at most MaxLine (1048576) bytes long without the "\n". Each
// request has exactly one spelling (Request.String); anything else — other
// whitespace, a "\r", empty arguments, lower case — is malformed.
//
//	PUSH <store-path> [<store-path>...]
//	    Queue 1 to MaxPaths (4096) store paths for upload, each a canonical
//	    /nix/store/<32-character hash>-<name> (no relative paths, no paths
//	    inside a store path, no ".."). A request with an invalid path is
//	    rejected whole. The reply "OK <n>" comes once the paths are on disk
//	    in the daemon's queue; n is how many were not queued already.
//	STATUS
//	    Reply "OK <json>": the daemon's status as one line of JSON.
//
// The post-build-hook sends its build's DRV_PATH among the paths (with
// OUT_PATHS, which Nix 2.8 leaves empty): a .drv in a PUSH from the hook
// means "this derivation was just built here". The daemon queues its
// outputs, and with --build-logs uploads its build log; no verb or field
// was needed for that, so every hook and daemon version still understand
// each other.
//
// The reply is one line: "OK <text>", or "ERR bad request: <detail>" for a
// malformed request (the detail quotes the offending token, cut to about
// 100 bytes; sending the request again fails again), or "ERR <message>" for
// a failure on the daemon's side, such as "ERR enqueue: ..." when the queue
// cannot be written (the request may succeed later).
//
// The whole request line must arrive within 2 seconds of connecting; a
// connection without one by then is closed unanswered, and so is one that
// ends mid-line. A line longer than MaxLine gets "ERR bad request: request
// line longer than 1048576 bytes". Root and the daemon's user may PUSH;
// other users the socket's permissions let in (a --status-group) may only
// ask STATUS, with 8 connections open at once among them: more get "ERR
// busy: ...". Root's and the daemon's user's connections have limits of
// their own (1024 open, 32 requests handled at once), so that other users
// never delay a hook.
//
// Example, with socat:
//
//	$ echo PUSH /nix/store/0c8jh4lmcv1g5wzw1xzyfwnhsp6rz2qq-hello-2.12.1 |
//	    socat - UNIX-CONNECT:/run/nixpushd/nixpushd.sock
//	OK 1
//
// It knows the wire protocol and the spool, nothing of caches or uploads:
// the daemon answers requests through Handler.
package hook
