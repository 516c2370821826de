// Package fsutil holds the file-system helpers that the queue, the hook's
// spool and the file:// cache share.
//
// It knows files, nothing of what they hold.
package fsutil
