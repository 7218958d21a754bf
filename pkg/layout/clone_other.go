//go:build !linux

package layout

import (
	"errors"
	"os"
)

// clone is not implemented here; Stage copies instead.
func clone(dst, src *os.File) error { return errors.ErrUnsupported }
