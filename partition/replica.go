package partition

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	"github.com/runnel-dev/runnel/log"
	"github.com/runnel-dev/runnel/record"
)

// Server is one member of a partition's raft group.
type Server struct {
	// ID is the member's raft server id: unique in the group and stable
	// across restarts (the broker's node id).
	ID string
	// Addr is the member's address on the raft transport.
	Addr string
}

// ReplicaConfig configures a Replica. Log, LogStore, StableStore, Transport,
// SnapshotDir and ID are required; zero values elsewhere mean the defaults
// below.
type ReplicaConfig struct {
	// ID is this replica's raft server id.
	ID string
	// Log is the partition's log. The Replica owns its content from Open to
	// Close: nothing else may append to it. The replica's writes never wait
	// for fsync, whatever the store's options, since the raft log is the
	// durable copy; the store may be shared with logs that do (Partition).
	Log *log.Log
	// LogStore and StableStore hold raft's log, term and vote. They must be
	// durable (fsynced) and keep raft.Log's Extensions.
	LogStore    raft.LogStore
	StableStore raft.StableStore
	// Transport carries this group's raft RPCs; its LocalAddr is this
	// replica's address. Close closes it if it implements raft.WithClose.
	Transport raft.Transport
	// SnapshotDir is a directory of this partition's own, for raft
	// snapshots. Snapshots taken here hold only a small header; one
	// received from a leader holds the partition's batches until two newer
	// snapshots replace it.
	SnapshotDir string
	// PeerLogEnd, when set, asks the node of server s to make its replica's
	// log durable and returns where that log ends. Before sending a
	// follower a snapshot, the leader asks it, so that a follower that
	// holds a prefix of the partition gets only the batches after it.
	// Without it, or when it fails, a snapshot carries the whole
	// partition.
	PeerLogEnd func(ctx context.Context, s Server) (int64, error)
	// Bootstrap is the group's first membership, this replica included.
	// It is used only when the stores hold no raft state yet; give every
	// first member the same list. A replica that joins a running group
	// leaves it empty and is added with AddVoter on the leader.
	Bootstrap []Server

	// MaxPendingBytes bounds the bytes proposed but not yet waited for.
	// Zero means 64 MiB.
	MaxPendingBytes int64
	// MaxProducers bounds the idempotent producers remembered; the least
	// recently used is forgotten first. Zero means 10,000.
	MaxProducers int
	// MsgIDWindow is how long, in record timestamps, a message id is
	// remembered. Zero means 2 minutes.
	MsgIDWindow time.Duration
	// MaxMsgIDs bounds the message ids remembered; the oldest go first.
	// Zero means 100,000.
	MaxMsgIDs int

	// Raft timing; see DefaultRaftTimings for the defaults and why.
	HeartbeatTimeout   time.Duration
	ElectionTimeout    time.Duration
	LeaderLeaseTimeout time.Duration
	CommitTimeout      time.Duration
	// SnapshotInterval is how often raft checks whether to snapshot, and
	// SnapshotThreshold how many new entries make it do so. TrailingLogs is
	// how many entries it keeps after a snapshot, so that a follower that
	// fell a little behind catches up from the log instead of a snapshot.
	SnapshotInterval  time.Duration
	SnapshotThreshold uint64
	TrailingLogs      uint64
	// MaxAppendEntries bounds the entries (batches) in one AppendEntries
	// RPC and in one group commit.
	MaxAppendEntries int

	// Logger receives the replica's and raft's messages; nil means
	// slog.Default.
	Logger *slog.Logger
}

// Defaults of ReplicaConfig. Snapshots cost a header, a small file and no
// sync of the partition's log, so they are taken every second or two while
// writes come in and keep raft's own log short: it holds the same batches
// as the partition's log, and compacting it while its entries are still in
// the raft store's memtable keeps them from being written to disk twice.
// raft keeps at least 64 entries, and every entry the partition's log may
// not have on disk yet (raftLogStore). A follower further behind catches up
// from a snapshot, streamed from the leader's log: only the batches after
// its log's end when PeerLogEnd is set. The timeouts are raft's defaults:
// fail-over in one to two seconds without elections on a busy laptop;
// CommitTimeout is also how often an idle leader sends followers the
// commit index, so it bounds how far a follower's readers lag behind the
// leader's when writes pause.
const (
	defaultHeartbeatTimeout   = time.Second
	defaultElectionTimeout    = time.Second
	defaultLeaderLeaseTimeout = 500 * time.Millisecond
	defaultCommitTimeout      = 50 * time.Millisecond
	defaultSnapshotInterval   = time.Second
	defaultSnapshotThreshold  = 64
	defaultTrailingLogs       = 64
	// 16 entries of up to ~1 MiB keep an AppendEntries RPC within ~16 MiB.
	defaultMaxAppendEntries = 16

	defaultMaxPendingBytes = 64 << 20
	defaultMaxProducers    = 10_000
	defaultMsgIDWindow     = 2 * time.Minute
	defaultMaxMsgIDs       = 100_000

	// retainSnapshots is how many snapshots the store keeps.
	retainSnapshots = 2
)

func (c ReplicaConfig) withDefaults() (ReplicaConfig, error) {
	switch {
	case c.ID == "":
		return c, errors.New("partition: replica needs an ID")
	case c.Log == nil:
		return c, errors.New("partition: replica needs a Log")
	case c.LogStore == nil || c.StableStore == nil:
		return c, errors.New("partition: replica needs a LogStore and a StableStore")
	case c.Transport == nil:
		return c, errors.New("partition: replica needs a Transport")
	case c.SnapshotDir == "":
		return c, errors.New("partition: replica needs a SnapshotDir")
	case c.MaxPendingBytes < 0 || c.MaxProducers < 0 || c.MaxMsgIDs < 0 || c.MsgIDWindow < 0:
		return c, errors.New("partition: negative replica limit")
	}
	def := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	def(&c.HeartbeatTimeout, defaultHeartbeatTimeout)
	def(&c.ElectionTimeout, defaultElectionTimeout)
	def(&c.LeaderLeaseTimeout, defaultLeaderLeaseTimeout)
	def(&c.CommitTimeout, defaultCommitTimeout)
	def(&c.SnapshotInterval, defaultSnapshotInterval)
	def(&c.MsgIDWindow, defaultMsgIDWindow)
	if c.SnapshotThreshold == 0 {
		c.SnapshotThreshold = defaultSnapshotThreshold
	}
	if c.TrailingLogs == 0 {
		c.TrailingLogs = defaultTrailingLogs
	}
	if c.MaxAppendEntries == 0 {
		c.MaxAppendEntries = defaultMaxAppendEntries
	}
	if c.MaxPendingBytes == 0 {
		c.MaxPendingBytes = defaultMaxPendingBytes
	}
	if c.MaxProducers == 0 {
		c.MaxProducers = defaultMaxProducers
	}
	if c.MaxMsgIDs == 0 {
		c.MaxMsgIDs = defaultMaxMsgIDs
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c, nil
}

// raftConfig returns raft's configuration for the replica.
func (c ReplicaConfig) raftConfig() *raft.Config {
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(c.ID)
	rc.HeartbeatTimeout = c.HeartbeatTimeout
	rc.ElectionTimeout = c.ElectionTimeout
	rc.LeaderLeaseTimeout = c.LeaderLeaseTimeout
	rc.CommitTimeout = c.CommitTimeout
	rc.SnapshotInterval = c.SnapshotInterval
	rc.SnapshotThreshold = c.SnapshotThreshold
	rc.TrailingLogs = c.TrailingLogs
	rc.MaxAppendEntries = c.MaxAppendEntries
	// Append hands proposals over without waiting for the leader loop,
	// which takes up to MaxAppendEntries of them per disk write.
	rc.BatchApplyCh = true
	// The log already holds everything up to its applied index; restoring
	// the newest snapshot on start would rewrite the whole partition.
	// raft still sets its applied index to the snapshot's and replays the
	// entries after it, which the state machine skips up to the log's.
	rc.NoSnapshotRestoreOnStart = true
	// raft would call Shutdown itself, and a second Shutdown does not wait
	// for raft's goroutines, so Close could not. A removed replica stays a
	// follower outside the group until Close.
	rc.ShutdownOnRemove = false
	rc.Logger = newRaftLogger(c.Logger)
	return rc
}

// Replica is one replica of a partition: a member of the partition's raft
// group whose state machine appends committed batches to the partition's
// log. Only the leader accepts appends; every replica serves reads of
// committed records. All methods are safe for concurrent use.
//
// Offsets are assigned when a batch is applied, in commit order: base is the
// log's end at that moment, the same on every replica.
//
// # Idempotent producers
//
// A batch with a producer id (record.Builder.SetProducer) is checked
// against the producer's state: the epoch and last sequence number, and the
// sequence numbers and offsets of its last 5 batches. A batch with the same
// sequence numbers as one of those is a duplicate: nothing is written and
// the original base offset is returned. A base sequence after last+1 fails
// with ErrOutOfOrderSequence, an older one not among the last 5 with
// ErrDuplicateSequence, a lower epoch with ErrProducerFenced; a higher epoch
// starts the producer afresh. A producer the partition does not know (new,
// or forgotten) may start at any sequence number. The state is kept for the
// MaxProducers most recently active producers: a retry from a producer
// forgotten since, or older than its last 5 batches, is not recognized.
//
// # Message ids
//
// A batch in which every record carries the MsgIDHeader header is a
// duplicate when every one of those ids was written within the window, and
// is then not written again; its answer is the offset where the first id
// was written. A batch with ids that are not all in the window is written
// whole, and its new ids enter the window: the broker never re-encodes a
// batch, so it cannot drop part of one. Producers that need the guarantee
// (the cron publisher) send each record with an id as its own batch.
// Batches with a record without an id are never deduplicated by id. The
// window is MsgIDWindow of record (producer) timestamps: an id leaves it
// when the largest timestamp seen in batches with ids is more than
// MsgIDWindow after its own, or when more than MaxMsgIDs newer ids came.
// Ids longer than 256 bytes are not remembered.
type Replica struct {
	cfg    ReplicaConfig
	log    *log.Log
	raft   *raft.Raft
	fsm    *fsm
	ws     *waiters
	logger *slog.Logger

	pending atomic.Int64

	// closeMu is held for reading by proposers (acquire) and for writing
	// by Close, so Close waits for proposals being handed to raft.
	closeMu sync.RWMutex
	closed  bool
	// propMu orders proposals: a proposal's sequence number and its place
	// in raft's queue are taken together.
	propMu sync.Mutex
	// transferring counts, under propMu, the leadership transfers under
	// way: raft refuses proposals then, so propose makes none but the
	// transfer's own.
	transferring int

	observer *raft.Observer
	obsCh    chan raft.Observation
	stop     chan struct{}
	wg       sync.WaitGroup

	shutOnce   sync.Once
	shutFuture raft.Future

	leaderMu sync.Mutex
	leader   Server
	leaderCh chan struct{}

	// readyTerm is the raft term in which a barrier this replica proposed
	// as leader was applied (LeaderReady); barrierTerm, under barrierMu,
	// the term of the barrier under way, if any.
	readyTerm   atomic.Uint64
	barrierMu   sync.Mutex
	barrierTerm uint64
}

// OpenReplica starts the replica: it recovers the log from the newest
// snapshot if a crash interrupted installing it, bootstraps the group if
// asked to and the stores are empty, and starts raft. Close stops it.
func OpenReplica(cfg ReplicaConfig) (*Replica, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	rc := cfg.raftConfig()
	files, err := raft.NewFileSnapshotStoreWithLogger(cfg.SnapshotDir, retainSnapshots, rc.Logger.Named("snapshot"))
	if err != nil {
		return nil, fmt.Errorf("partition %s: snapshot store: %w", cfg.Log.ID(), err)
	}
	snaps := &snapshotStore{files: files, log: cfg.Log}
	replayTo, err := recoverSnapshot(cfg.Log, snaps)
	if err != nil {
		return nil, fmt.Errorf("partition %s: %w", cfg.Log.ID(), err)
	}
	cfg.LogStore = &raftLogStore{LogStore: cfg.LogStore, log: cfg.Log}
	d := newDedupe(cfg.MaxProducers, cfg.MsgIDWindow.Milliseconds(), cfg.MaxMsgIDs)
	if err := d.load(cfg.Log); err != nil {
		return nil, fmt.Errorf("partition %s: %w", cfg.Log.ID(), err)
	}
	qs := newQueues()
	if err := qs.load(cfg.Log); err != nil {
		return nil, fmt.Errorf("partition %s: %w", cfg.Log.ID(), err)
	}
	ws := newWaiters()
	f := &fsm{log: cfg.Log, dedupe: d, queues: qs, ws: ws, logger: cfg.Logger, failCh: make(chan struct{})}
	if err := f.replay(cfg.LogStore, replayTo); err != nil {
		return nil, fmt.Errorf("partition %s: %w", cfg.Log.ID(), err)
	}

	if len(cfg.Bootstrap) > 0 {
		has, err := raft.HasExistingState(cfg.LogStore, cfg.StableStore, snaps)
		if err != nil {
			return nil, fmt.Errorf("partition %s: %w", cfg.Log.ID(), err)
		}
		if !has {
			var conf raft.Configuration
			for _, s := range cfg.Bootstrap {
				conf.Servers = append(conf.Servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(s.ID), Address: raft.ServerAddress(s.Addr)})
			}
			if err := raft.BootstrapCluster(rc, cfg.LogStore, cfg.StableStore, snaps, cfg.Transport, conf); err != nil {
				return nil, fmt.Errorf("partition %s: bootstrap: %w", cfg.Log.ID(), err)
			}
		}
	}
	trans := cfg.Transport
	if cfg.PeerLogEnd != nil {
		st := &snapshotTransport{Transport: trans, log: cfg.Log, peerLogEnd: cfg.PeerLogEnd, logger: cfg.Logger}
		trans = st
		if _, ok := cfg.Transport.(raft.WithPreVote); ok {
			trans = preVoteSnapshotTransport{st}
		}
	}
	ra, err := raft.NewRaft(rc, f, cfg.LogStore, cfg.StableStore, snaps, trans)
	if err != nil {
		return nil, fmt.Errorf("partition %s: start raft: %w", cfg.Log.ID(), err)
	}
	r := &Replica{
		cfg:      cfg,
		log:      cfg.Log,
		raft:     ra,
		fsm:      f,
		ws:       ws,
		logger:   cfg.Logger,
		obsCh:    make(chan raft.Observation, 16),
		stop:     make(chan struct{}),
		leaderCh: make(chan struct{}),
	}
	r.observer = raft.NewObserver(r.obsCh, false, func(o *raft.Observation) bool {
		switch o.Data.(type) {
		case raft.LeaderObservation, raft.RaftState:
			return true
		}
		return false
	})
	ra.RegisterObserver(r.observer)
	r.wg.Add(1)
	go r.watch()
	return r, nil
}

// recoverSnapshot brings the log up to the newest snapshot when a crash
// left it behind, since raft restores nothing on start
// (NoSnapshotRestoreOnStart) and replays only the entries after the
// snapshot. A snapshot received from a leader whose Restore a crash stopped
// before the end (which leaves the log's applied index at 0) is installed
// again. A snapshot taken here holds no batches: the log lost what it had
// not flushed, and recoverSnapshot returns the snapshot's index, up to
// which the caller replays the raft log's entries (fsm.replay), which
// raftLogStore keeps for it. It returns 0 when there is nothing to replay.
func recoverSnapshot(l *log.Log, snaps *snapshotStore) (replayTo uint64, err error) {
	metas, err := snaps.List()
	if err != nil || len(metas) == 0 {
		return 0, err
	}
	meta, rc, err := snaps.files.Open(metas[0].ID)
	if err != nil {
		return 0, fmt.Errorf("open snapshot %s: %w", metas[0].ID, err)
	}
	defer rc.Close()
	br := bufio.NewReaderSize(rc, 1<<20)
	hdr, _, err := readHeader(br)
	if err != nil {
		return 0, fmt.Errorf("snapshot %s: %w", metas[0].ID, err)
	}
	if hdr.applied <= l.Applied() {
		return 0, nil
	}
	if !hdr.inline {
		return meta.Index, nil
	}
	return 0, restoreLog(l, hdr, br)
}

// raftLogStore is a replica's raft log store. raft compacts its log after
// each snapshot, up to the snapshot's index less TrailingLogs; the log may
// not have those entries on disk yet (the state machine writes without
// waiting for a sync), so raftLogStore keeps every entry after the log's
// Durable index. A log store without a write-ahead log flushes every few
// MiB (log.Options.CheckpointBytes), so the entries go while still in the
// raft store's memtable and are written to disk once, in its write-ahead
// log.
type raftLogStore struct {
	raft.LogStore
	log *log.Log
}

// DeleteRange deletes entries up to the log's Durable index when raft
// compacts, and as asked otherwise: raft deletes the entries after a
// conflict up to its last one, while a compaction keeps at least
// TrailingLogs (at least 1) of them.
func (s *raftLogStore) DeleteRange(lo, hi uint64) error {
	last, err := s.LogStore.LastIndex()
	if err != nil {
		return err
	}
	if hi < last {
		hi = min(hi, s.log.Durable())
		if hi < lo {
			return nil
		}
	}
	return s.LogStore.DeleteRange(lo, hi)
}

// watch follows raft's leadership and term for the waiters and
// LeaderChanged, and shuts raft down if the state machine fails. The
// observer may drop observations, so a ticker backs it up.
func (r *Replica) watch() {
	defer r.wg.Done()
	tick := time.NewTicker(r.cfg.HeartbeatTimeout)
	defer tick.Stop()
	failed := r.fsm.failCh
	for {
		select {
		case <-r.stop:
			return
		case <-r.obsCh:
		case <-tick.C:
		case <-failed:
			failed = nil
			r.shutdown()
		}
		// A proposal is in the leader's log until the leader steps down;
		// after that, or in a later term, nobody knows yet whether it
		// commits. The term alone is not enough: with pre-vote an isolated
		// leader steps down and stays in its term.
		if term := r.raft.CurrentTerm(); r.raft.State() == raft.Leader {
			r.ws.failBefore(term)
		} else {
			r.ws.failAll(errLeadershipLost)
		}
		r.noteLeader()
	}
}

// shutdown stops raft once and returns the future that waits for it. A
// transport with an Interrupt method (raftmux's) is interrupted first, so
// that raft's replicators are not left waiting for a peer that is down.
func (r *Replica) shutdown() raft.Future {
	r.shutOnce.Do(func() {
		if t, ok := r.cfg.Transport.(interface{ Interrupt() }); ok {
			t.Interrupt()
		}
		r.shutFuture = r.raft.Shutdown()
	})
	return r.shutFuture
}

func (r *Replica) noteLeader() {
	s, _ := r.Leader()
	r.leaderMu.Lock()
	defer r.leaderMu.Unlock()
	if s != r.leader {
		r.leader = s
		close(r.leaderCh)
		r.leaderCh = make(chan struct{})
	}
}

// Close stops raft and the replica's goroutine. Appends still waiting end
// with ErrOutcomeUnknown. The log, stores and snapshot directory stay as
// they are, for a later OpenReplica. Close closes the transport if it
// implements raft.WithClose.
func (r *Replica) Close() error {
	r.closeMu.Lock()
	if r.closed {
		r.closeMu.Unlock()
		return ErrClosed
	}
	r.closed = true
	r.closeMu.Unlock()
	err := r.shutdown().Error()
	r.raft.DeregisterObserver(r.observer)
	close(r.stop)
	r.wg.Wait()
	r.ws.failAll(errClosedInFlight)
	r.leaderMu.Lock()
	close(r.leaderCh)
	r.leaderMu.Unlock()
	if err != nil {
		return fmt.Errorf("partition %s: close: %w", r.log.ID(), err)
	}
	return nil
}

// Log returns the partition's log.
func (r *Replica) Log() *log.Log { return r.log }

// Append proposes b to the group and returns a Pending whose WaitOffset
// returns the offset the batch got once it is committed and applied on
// this replica (Base is -1 until then). Call Append from one goroutine per
// produce stream: batches are proposed, and so committed, in the order of
// the calls. b is validated first and copied; the caller may reuse it.
//
// Append fails at once with a *NotLeaderError on a follower, a
// *BacklogError over MaxPendingBytes, an error matching record.ErrCorrupt
// or record.ErrUnsupported for a bad batch, and ErrClosed after Close.
// Wait's errors are described in errors.go: the state machine's verdicts
// (ErrOutOfOrderSequence, ErrDuplicateSequence, ErrProducerFenced) are
// definite; ErrOutcomeUnknown means the batch may or may not be committed.
//
// acks does not change how a replica proposes: raft tells the leader
// nothing between accepting an entry and committing it, so AcksLeader waits
// as AcksAll does; the caller decides whether to answer before Wait.
func (r *Replica) Append(b record.Batch, acks Acks) (Pending, error) {
	if err := b.Validate(); err != nil {
		return Pending{}, fmt.Errorf("partition %s: append: %w", r.log.ID(), err)
	}
	if b.ProducerID() >= 0 {
		if err := checkProducerFields(b); err != nil {
			return Pending{}, fmt.Errorf("partition %s: append: %w", r.log.ID(), err)
		}
	}
	if err := r.acquire(); err != nil {
		return Pending{}, err
	}
	defer r.closeMu.RUnlock()
	n := int64(len(b))
	if cur := r.pending.Add(n); cur > r.cfg.MaxPendingBytes && cur != n {
		r.pending.Add(-n)
		return Pending{}, &BacklogError{Pending: cur - n, Limit: r.cfg.MaxPendingBytes, RetryAfter: 50 * time.Millisecond}
	}
	data := make([]byte, 1+len(b))
	data[0] = entryBatch
	copy(data[1:], b)
	w, err := r.propose(data, false)
	if err != nil {
		r.pending.Add(-n)
		return Pending{}, err
	}
	return Pending{Base: -1, w: w, wait: func() (int64, error) {
		<-w.done
		r.pending.Add(-n)
		if w.res.err != nil {
			return -1, w.res.err
		}
		return w.res.base, nil
	}}, nil
}

// acquire checks that the replica is open and its state machine running,
// and takes closeMu for reading, so that Close waits for the proposal the
// caller makes; release with r.closeMu.RUnlock.
func (r *Replica) acquire() error {
	r.closeMu.RLock()
	if r.closed {
		r.closeMu.RUnlock()
		return ErrClosed
	}
	select {
	case <-r.fsm.failCh:
		r.closeMu.RUnlock()
		return ErrReplicaFailed
	default:
	}
	return nil
}

// propose hands data to raft as an entry and returns the waiter its
// outcome reaches (see waiters). It fails with a *NotLeaderError on a
// follower and, unless duringTransfer, while a leadership transfer is under
// way: no replica takes writes until the transfer ends, and then the
// caller asks again (see transfer).
func (r *Replica) propose(data []byte, duringTransfer bool) (*waiter, error) {
	r.propMu.Lock()
	defer r.propMu.Unlock()
	if r.raft.State() != raft.Leader {
		return nil, r.notLeader()
	}
	if r.transferring > 0 && !duringTransfer {
		return nil, &NotLeaderError{}
	}
	// Read after the state, the term is the one the entry gets, unless
	// leadership changes in between; then watch ends the proposal as
	// unknown, which is always safe.
	w, token := r.ws.add(r.raft.CurrentTerm())
	// No enqueue timeout: raft's loop in every state takes proposals at
	// once (a follower's answers ErrNotLeader, which the term check turns
	// into ErrOutcomeUnknown). The future is not waited on; see waiters.
	r.raft.ApplyLog(raft.Log{Data: data, Extensions: token}, 0)
	return w, nil
}

func (r *Replica) notLeader() error {
	addr, id := r.raft.LeaderWithID()
	return &NotLeaderError{LeaderID: string(id), LeaderAddr: string(addr)}
}

// Read returns batches from offset from, below the high watermark: on any
// replica, only committed records.
func (r *Replica) Read(from int64, maxBytes int) ([]record.Batch, error) {
	return r.log.Read(from, maxBytes)
}

// Start returns the first offset still stored.
func (r *Replica) Start() int64 { return r.log.Start() }

// End returns the high watermark: the offset after the last committed record
// this replica has applied. A follower's may lag the leader's by a commit
// timeout.
func (r *Replica) End() int64 { return r.log.End() }

// Wait returns a channel closed when the high watermark next moves.
func (r *Replica) Wait() <-chan struct{} { return r.log.Wait() }

// OffsetForTime returns the first offset with a timestamp at or after ms.
func (r *Replica) OffsetForTime(ms int64) (int64, error) { return r.log.OffsetForTime(ms) }

// Leader returns the group's leader as this replica knows it, and false
// when it knows none.
func (r *Replica) Leader() (Server, bool) {
	addr, id := r.raft.LeaderWithID()
	return Server{ID: string(id), Addr: string(addr)}, id != ""
}

// IsLeader reports whether this replica is the leader.
func (r *Replica) IsLeader() bool { return r.raft.State() == raft.Leader }

// leaderBarrierTimeout bounds how long LeaderReady's barrier waits to be
// taken into raft's queue.
const leaderBarrierTimeout = 5 * time.Second

// LeaderReady reports whether this replica leads and its log holds every
// entry committed before its current term began. A newly elected leader
// learns which entries are committed only when one of its own term
// commits, so until then its log can end before records its predecessor
// acknowledged, and reads of it would miss them. The first call in a term
// proposes a raft barrier in the background; calls return true once it has
// been applied, in the same term, with the replica still leading.
func (r *Replica) LeaderReady() bool {
	if r.raft.State() != raft.Leader {
		return false
	}
	term := r.raft.CurrentTerm()
	if r.readyTerm.Load() == term {
		return true
	}
	r.barrierMu.Lock()
	defer r.barrierMu.Unlock()
	if r.barrierTerm == term {
		return false // under way
	}
	if err := r.acquire(); err != nil {
		return false
	}
	defer r.closeMu.RUnlock()
	r.barrierTerm = term
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		err := r.raft.Barrier(leaderBarrierTimeout).Error()
		if err == nil && r.raft.State() == raft.Leader && r.raft.CurrentTerm() == term {
			r.readyTerm.Store(term)
			return
		}
		// Lost the leadership, a transfer under way, or a full queue:
		// the next call tries again.
		r.barrierMu.Lock()
		if r.barrierTerm == term {
			r.barrierTerm = 0
		}
		r.barrierMu.Unlock()
	}()
	return false
}

// LeaderChanged returns a channel closed when the leader this replica knows
// next changes (including to none), or at Close. Take the channel before
// reading Leader, as with log.Log.Wait. Changes are noticed within
// HeartbeatTimeout.
func (r *Replica) LeaderChanged() <-chan struct{} {
	r.leaderMu.Lock()
	defer r.leaderMu.Unlock()
	return r.leaderCh
}

// LeadershipTransfer hands leadership to the most up-to-date other voter
// and returns once one has taken it, or fails (TransferLeadershipTo names
// the voter). raft answers within the election timeout, except when the
// replica is closed just as the request is queued, when it may not answer
// at all; callers that must not block on Close call it from a goroutine.
func (r *Replica) LeadershipTransfer() error {
	return r.transfer("leadership transfer", r.raft.LeadershipTransfer)
}

// AddVoter adds s to the group as a voter, on the leader; it returns once
// the change is committed. s catches up from the log or a snapshot.
func (r *Replica) AddVoter(s Server) error {
	f := r.raft.AddVoter(raft.ServerID(s.ID), raft.ServerAddress(s.Addr), 0, r.cfg.ElectionTimeout)
	return r.adminErr("add voter", f.Error())
}

// RemoveServer removes server id from the group, on the leader; it returns
// once the change is committed. The removed replica keeps running outside
// the group, serving what it has, until it is closed.
func (r *Replica) RemoveServer(id string) error {
	f := r.raft.RemoveServer(raft.ServerID(id), 0, r.cfg.ElectionTimeout)
	return r.adminErr("remove server", f.Error())
}

// Servers returns the group's latest membership.
func (r *Replica) Servers() ([]Server, error) {
	f := r.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, r.adminErr("configuration", err)
	}
	var out []Server
	for _, s := range f.Configuration().Servers {
		out = append(out, Server{ID: string(s.ID), Addr: string(s.Address)})
	}
	return out, nil
}

// Snapshot syncs the log and takes a raft snapshot now (raft takes them on
// its own too), so raft can drop its log entries up to the applied index
// minus TrailingLogs.
func (r *Replica) Snapshot() error {
	if err := r.log.Sync(); err != nil {
		return fmt.Errorf("partition %s: snapshot: %w", r.log.ID(), err)
	}
	err := r.raft.Snapshot().Error()
	if errors.Is(err, raft.ErrNothingNewToSnapshot) {
		return nil
	}
	return r.adminErr("snapshot", err)
}

func (r *Replica) adminErr(op string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, raft.ErrNotLeader):
		return fmt.Errorf("partition %s: %s: %w", r.log.ID(), op, r.notLeader())
	case errors.Is(err, raft.ErrLeadershipLost):
		return fmt.Errorf("partition %s: %s: %w: %w", r.log.ID(), op, ErrOutcomeUnknown, err)
	case errors.Is(err, raft.ErrRaftShutdown):
		return fmt.Errorf("partition %s: %s: %w", r.log.ID(), op, ErrClosed)
	}
	return fmt.Errorf("partition %s: %s: %w", r.log.ID(), op, err)
}

// Stats describe a replica's raft state.
type Stats struct {
	// State is raft's state: Follower, Candidate, Leader or Shutdown.
	State string
	Term  uint64
	// Leader is the leader this replica knows; empty when none.
	Leader Server
	// LastLogIndex, CommitIndex and AppliedIndex are raft's: the last
	// entry in its log, the last known committed, the last handed to the
	// state machine.
	LastLogIndex, CommitIndex, AppliedIndex uint64
	// LogApplied is the raft index the partition's log last recorded.
	LogApplied uint64
	// LastSnapshotIndex is the raft index of the newest snapshot.
	LastSnapshotIndex uint64
	// LastContact is when a follower last heard from the leader (zero on a
	// leader).
	LastContact time.Time
	// SnapshotsRestored counts snapshots installed from a leader since
	// OpenReplica.
	SnapshotsRestored int64
	// Failed is set when the state machine stopped on a log write error.
	Failed bool
}

// Stats returns the replica's raft state.
func (r *Replica) Stats() Stats {
	leader, _ := r.Leader()
	snap, _ := strconv.ParseUint(r.raft.Stats()["last_snapshot_index"], 10, 64)
	s := Stats{
		State:             r.raft.State().String(),
		Term:              r.raft.CurrentTerm(),
		Leader:            leader,
		LastLogIndex:      r.raft.LastIndex(),
		CommitIndex:       r.raft.CommitIndex(),
		AppliedIndex:      r.raft.AppliedIndex(),
		LogApplied:        r.log.Applied(),
		LastSnapshotIndex: snap,
		SnapshotsRestored: r.fsm.restores.Load(),
	}
	if s.State != raft.Leader.String() {
		s.LastContact = r.raft.LastContact()
	}
	select {
	case <-r.fsm.failCh:
		s.Failed = true
	default:
	}
	return s
}
