//go:build !linux

package bench

import "os/exec"

// setDeathSignal does nothing where the kernel offers no parent-death
// signal; stop still ends every child on the bench's own exit paths.
func setDeathSignal(*exec.Cmd) {}
