package partition

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"sync"
)

var (
	errLost           = fmt.Errorf("%w: the entry was overwritten by a later leader's", ErrOutcomeUnknown)
	errLeadershipLost = fmt.Errorf("%w: leadership lost before the entry was applied", ErrOutcomeUnknown)
	errClosedInFlight = fmt.Errorf("%w: replica closed before the entry was applied", ErrOutcomeUnknown)
)

// waiters tell Append's callers what became of their proposals.
//
// raft's ApplyFuture is not used for that: a future whose entry is committed
// but still queued for the state machine when raft shuts down is never
// answered (raft.Raft.Shutdown stops runFSM with the queue full), and its
// Error cannot be abandoned, so waiting on it could block forever. Instead
// each proposal carries a token in the raft entry's Extensions — this
// replica's random nonce and a sequence number — and the state machine
// reports every entry it applies here. A proposal ends in one of these ways:
//
//   - the state machine applies its entry: its result;
//   - the state machine applies a later proposal of this replica: a
//     replica proposes only as leader, a leader's entries keep their order
//     in its log, and an entry that commits is in every later leader's
//     log, so this one was overwritten (reported as ErrOutcomeUnknown,
//     conservatively);
//   - the replica stops being the leader, or its term moves past the
//     proposal's (raft's ErrLeadershipLost): the entry may still be
//     committed by a later leader, so ErrOutcomeUnknown;
//   - Close: ErrOutcomeUnknown.
type waiters struct {
	nonce uint64

	mu    sync.Mutex
	next  uint64    // sequence number of the next proposal
	queue []*waiter // proposals in flight, by sequence number
	head  int
}

// waiter is one proposal in flight.
type waiter struct {
	seq, term uint64
	done      chan struct{}
	res       result // set before done is closed
}

// result is what the state machine made of an entry.
type result struct {
	base        int64
	term, index uint64
	err         error
	// queue is a queue entry's result.
	queue *queueResult
}

func newWaiters() *waiters {
	var b [8]byte
	_, _ = rand.Read(b[:]) // never fails
	return &waiters{nonce: binary.BigEndian.Uint64(b[:])}
}

// add registers a proposal made in term and returns it with its token. The
// caller proposes entries in the order it adds them.
func (ws *waiters) add(term uint64) (*waiter, []byte) {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	w := &waiter{seq: ws.next, term: term, done: make(chan struct{})}
	ws.next++
	ws.queue = append(ws.queue, w)
	token := binary.BigEndian.AppendUint64(make([]byte, 0, 16), ws.nonce)
	return w, binary.BigEndian.AppendUint64(token, w.seq)
}

// applied reports an entry the state machine applied, with the token it
// carried (nil for none) and its result.
func (ws *waiters) applied(token []byte, res result) {
	if len(token) != 16 || binary.BigEndian.Uint64(token) != ws.nonce {
		return
	}
	ws.mu.Lock()
	defer ws.mu.Unlock()
	seq := binary.BigEndian.Uint64(token[8:])
	ws.failLocked(func(w *waiter) bool { return w.seq < seq }, errLost)
	if ws.head < len(ws.queue) && ws.queue[ws.head].seq == seq {
		ws.finishLocked(res)
	}
}

// failBefore ends the proposals made before term.
func (ws *waiters) failBefore(term uint64) {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	ws.failLocked(func(w *waiter) bool { return w.term < term }, errLeadershipLost)
}

// failAll ends every proposal with err.
func (ws *waiters) failAll(err error) {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	ws.failLocked(func(*waiter) bool { return true }, err)
}

// failLocked ends proposals from the oldest on while match holds. Terms
// and sequence numbers both grow along the queue, so the matches are a
// prefix.
func (ws *waiters) failLocked(match func(*waiter) bool, err error) {
	for ws.head < len(ws.queue) && match(ws.queue[ws.head]) {
		ws.finishLocked(result{base: -1, err: err})
	}
}

// finishLocked ends the oldest proposal with res.
func (ws *waiters) finishLocked(res result) {
	w := ws.queue[ws.head]
	ws.queue[ws.head] = nil
	ws.head++
	if ws.head == len(ws.queue) {
		ws.queue, ws.head = ws.queue[:0], 0
	} else if ws.head > 1024 && ws.head > len(ws.queue)/2 {
		n := copy(ws.queue, ws.queue[ws.head:])
		clear(ws.queue[n:])
		ws.queue, ws.head = ws.queue[:n], 0
	}
	w.res = res
	close(w.done)
}

// len returns the number of proposals in flight.
func (ws *waiters) len() int {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	return len(ws.queue) - ws.head
}
