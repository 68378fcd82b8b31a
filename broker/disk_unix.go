//go:build unix

package broker

import "golang.org/x/sys/unix"

// diskSpace returns the space free to unprivileged users on the file
// system holding dir.
func diskSpace(dir string) (int64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, err
	}
	return int64(st.Bavail) * int64(st.Bsize), nil
}
