package bench

import (
	"os/exec"
	"syscall"
)

// setDeathSignal makes the kernel kill the child if the bench dies without
// stopping it (a crash, SIGKILL): no verifier outlives the run.
func setDeathSignal(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
