package partition

import (
	"fmt"

	"github.com/hashicorp/raft"
	"github.com/runnel-dev/runnel/log"
)

// applyQueue applies a queue group operation. Its decisions depend only
// on the group's state, the time the leader stamped into the entry and the
// log up to its end, the same on every replica.
func (f *fsm) applyQueue(e *raft.Log, res result) result {
	op, err := decodeQueueOp(e.Data[1:])
	if err != nil {
		res.err = f.fail(fmt.Errorf("entry %d: %w", e.Index, err))
		return res
	}
	qr, ops := f.queues.apply(f.log, op)
	if _, err := f.log.ApplyAt(e.Index, nil, func(int64) []log.StateOp { return ops }); err != nil {
		res.err = f.fail(err)
		return res
	}
	res.queue = &qr
	return res
}
