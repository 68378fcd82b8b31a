package worker

import "syscall"

// dieWithWorker makes the command's shell get SIGKILL if the worker dies
// first (say, kill -9), so that it does not run on unsupervised while the
// job's lease runs out and another worker starts it again. What the shell
// started itself is not reached.
func dieWithWorker(attr *syscall.SysProcAttr) {
	attr.Pdeathsig = syscall.SIGKILL
}
