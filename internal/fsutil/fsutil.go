package fsutil

import "os"

// SyncDir fsyncs the directory dir, making the creation, renaming or
// removal of its entries durable. Without it a power cut can lose a file
// that was itself synced.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
