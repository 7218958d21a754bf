//go:build linux

package safepath

import "testing"

// modes runs f once with openat2 (when the kernel has it) and once with the
// O_NOFOLLOW walk alone.
func modes(t *testing.T, f func(t *testing.T)) {
	t.Run("openat2", func(t *testing.T) {
		if !openat2Works() {
			t.Skip("this kernel has no openat2 (Linux < 5.6 or seccomp); the walk is tested below")
		}
		f(t)
	})
	t.Run("walk", func(t *testing.T) {
		noOpenat2.Store(true)
		t.Cleanup(func() { noOpenat2.Store(false) })
		f(t)
	})
}
