//go:build !unix

package broker

import "errors"

// diskSpace is not implemented here: the disk guard stays off.
func diskSpace(dir string) (int64, error) {
	return 0, errors.New("free disk space is not read on this system")
}
