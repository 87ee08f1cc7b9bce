//go:build !linux

package ctl

import (
	"errors"
	"os"
)

// echoOff is not supported on this platform: the password is echoed.
func echoOff(*os.File) (func(), error) {
	return nil, errors.New("hiding terminal input is not supported on this platform")
}
