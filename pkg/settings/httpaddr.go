package settings

import (
	"errors"
	"net"
	"strconv"
)

// httpAddr checks a listen address such as ":9464" or "127.0.0.1:9464";
// empty means off.
func httpAddr(v string) (string, error) {
	if v == "" {
		return "", nil
	}
	_, port, err := net.SplitHostPort(v)
	if err != nil {
		return "", errors.New("want HOST:PORT, e.g. :9464 (empty: off)")
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return "", errors.New("want HOST:PORT with a port number from 0 to 65535, e.g. :9464")
	}
	return v, nil
}
