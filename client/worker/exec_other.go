//go:build !linux

package worker

import "syscall"

// dieWithWorker does nothing: only Linux has a parent-death signal.
func dieWithWorker(attr *syscall.SysProcAttr) {}
