//go:build unix

package atomicfile

import "os"

// syncDir makes the entries of dir durable: a rename or a removal in it
// survives a crash once it returns.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
