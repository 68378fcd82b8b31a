package raftmux

import "errors"

var (
	// ErrGroupRegistered is returned by Mux.Layer for a group that already
	// has an open Layer on that Mux.
	ErrGroupRegistered = errors.New("raftmux: group already registered")

	// ErrGroupName is matched by the error Mux.Layer returns for a group
	// name that is empty or longer than 1024 bytes.
	ErrGroupName = errors.New("raftmux: group name must be 1 to 1024 bytes")

	// ErrAdvertise is matched by the error New returns for an address peers
	// cannot dial: not HOST:PORT, or with an unspecified host or port 0.
	ErrAdvertise = errors.New("raftmux: address cannot be advertised")
)
