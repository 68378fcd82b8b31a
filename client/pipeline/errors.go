package pipeline

import "errors"

// ErrUnroutable is returned, wrapped with the input's position, when Split
// finds no route for a record. The record is not dropped: its offset is
// not committed, so it is read again once the routes are fixed.
var ErrUnroutable = errors.New("pipeline: no route for record")

// ErrNoTopic is returned, wrapped, when a Func returns an output without
// a Topic.
var ErrNoTopic = errors.New("pipeline: output has no topic")
