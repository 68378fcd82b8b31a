package record

import "errors"

var (
	// ErrCorrupt is returned, wrapped with what is wrong, for a batch whose
	// bytes do not decode: a bad length, CRC, magic or record.
	ErrCorrupt = errors.New("record: corrupt batch")
	// ErrUnsupported is returned for a well-formed batch that uses a feature
	// this version does not know, such as an unknown compression codec.
	ErrUnsupported = errors.New("record: unsupported batch")
)
