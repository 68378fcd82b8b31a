package broker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// fileOffsets keeps a single node's committed offsets in two files: a
// snapshot (offsets.json, replaced atomically) and a log of the changes
// since (offsets.log, one JSON line per batch of changes, fsynced before
// the batch is acknowledged). Commits that arrive while a write is under
// way wait for the next one and share it, so one fsync covers a batch of
// commits. When the log grows past a bound, the snapshot is rewritten and
// the log emptied; replaying a log over a snapshot that already holds it
// gives the same offsets, so a crash between the two steps loses nothing.
type fileOffsets struct {
	path    string // the snapshot; "" keeps offsets in memory only
	logPath string
	noSync  bool
	log     *os.File
	logSize int64

	mu   sync.Mutex
	cur  map[string]map[string]int64 // group → "topic/partition" → offset
	next []*offsetWrite              // waiting for the next write
	busy bool                        // a writer is running
}

// compactAt is the log size past which the snapshot is rewritten.
const compactAt = 8 << 20

type offsetWrite struct {
	op   offsetOp
	done chan error
}

// offsetOp is one change, as a line of the log holds it.
type offsetOp struct {
	Group   string           `json:"g"`
	Offsets map[string]int64 `json:"o,omitempty"`
	Force   bool             `json:"f,omitempty"`
	Delete  bool             `json:"d,omitempty"`
}

// offsetsFile is the snapshot: group → "topic/partition" → offset.
type offsetsFile struct {
	Groups map[string]map[string]int64 `json:"groups"`
}

func openFileOffsets(path string, noSync bool) (*fileOffsets, error) {
	o := &fileOffsets{path: path, noSync: noSync, cur: map[string]map[string]int64{}}
	if path == "" {
		return o, nil
	}
	o.logPath = strings.TrimSuffix(path, filepath.Ext(path)) + ".log"
	data, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, err
	default:
		var f offsetsFile
		if err := json.Unmarshal(data, &f); err != nil {
			return nil, fmt.Errorf("read committed offsets %s: %w", path, err)
		}
		for g, m := range f.Groups {
			applyOp(o.cur, offsetOp{Group: g, Offsets: m, Force: true})
		}
	}
	logData, err := os.ReadFile(o.logPath)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	lines := strings.Split(string(logData), "\n")
	good := 0 // bytes of whole, readable lines
	for i, line := range lines {
		if line == "" {
			continue
		}
		var ops []offsetOp
		if err := json.Unmarshal([]byte(line), &ops); err != nil {
			if i == len(lines)-1 {
				break // a write cut short by a crash: never acknowledged
			}
			return nil, fmt.Errorf("read committed offsets %s: line %d: %w", o.logPath, i+1, err)
		}
		for _, op := range ops {
			applyOp(o.cur, op)
		}
		good += len(line) + 1
	}
	o.log, err = os.OpenFile(o.logPath, os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, err
	}
	// Drop a torn tail so the next line starts clean.
	if err := o.log.Truncate(int64(good)); err != nil {
		o.log.Close()
		return nil, err
	}
	if _, err := o.log.Seek(int64(good), 0); err != nil {
		o.log.Close()
		return nil, err
	}
	o.logSize = int64(good)
	return o, nil
}

func (o *fileOffsets) close() error {
	if o.log == nil {
		return nil
	}
	return o.log.Close()
}

func (o *fileOffsets) commitOffsets(ctx context.Context, group string, offs map[tp]int64, force bool) error {
	m := make(map[string]int64, len(offs))
	for p, off := range offs {
		m[p.String()] = off
	}
	return o.write(ctx, offsetOp{Group: group, Offsets: m, Force: force})
}

func (o *fileOffsets) deleteOffsets(ctx context.Context, group string) error {
	return o.write(ctx, offsetOp{Group: group, Delete: true})
}

func (o *fileOffsets) offsets(group string) map[tp]int64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	return parseOffsets(o.cur[group])
}

func (o *fileOffsets) groups() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return slices.Sorted(maps.Keys(o.cur))
}

// write queues op and, unless a writer is running, becomes the writer. The
// writer appends every queued change to the log in one write, fsyncs it,
// applies the changes and answers their callers, until the queue is empty.
func (o *fileOffsets) write(ctx context.Context, op offsetOp) error {
	w := &offsetWrite{op: op, done: make(chan error, 1)}
	o.mu.Lock()
	o.next = append(o.next, w)
	if o.busy {
		o.mu.Unlock()
		select {
		case err := <-w.done:
			return err
		case <-ctx.Done():
			// The write may still happen; the caller learns it did not
			// wait for it.
			return ctx.Err()
		}
	}
	o.busy = true
	for len(o.next) > 0 {
		batch := o.next
		o.next = nil
		o.mu.Unlock()
		ops := make([]offsetOp, len(batch))
		for i, w := range batch {
			ops[i] = w.op
		}
		err := o.append(ops)
		o.mu.Lock()
		if err == nil {
			for _, op := range ops {
				applyOp(o.cur, op)
			}
			if o.logSize > compactAt {
				err = o.compactLocked()
			}
		}
		for _, w := range batch {
			w.done <- err
		}
	}
	o.busy = false
	o.mu.Unlock()
	return <-w.done
}

// append writes ops as one log line and fsyncs it.
func (o *fileOffsets) append(ops []offsetOp) error {
	if o.log == nil {
		return nil
	}
	line, err := json.Marshal(ops)
	if err != nil {
		return err
	}
	line = append(line, '\n')
	if _, err := o.log.Write(line); err != nil {
		return fmt.Errorf("write committed offsets %s: %w", o.logPath, err)
	}
	o.logSize += int64(len(line))
	if o.noSync {
		return nil
	}
	if err := o.log.Sync(); err != nil {
		return fmt.Errorf("sync committed offsets %s: %w", o.logPath, err)
	}
	return nil
}

// compactLocked writes the snapshot and empties the log.
func (o *fileOffsets) compactLocked() error {
	data, err := json.Marshal(offsetsFile{Groups: o.cur})
	if err != nil {
		return err
	}
	if err := writeFileAtomic(o.path, data, !o.noSync); err != nil {
		return fmt.Errorf("write committed offsets %s: %w", o.path, err)
	}
	if err := o.log.Truncate(0); err != nil {
		return err
	}
	if _, err := o.log.Seek(0, 0); err != nil {
		return err
	}
	o.logSize = 0
	if o.noSync {
		return nil
	}
	return o.log.Sync()
}

// applyOp applies one change to state, keyed by group and then
// "topic/partition". Without Force an offset below the current one is
// ignored, so replaying changes already applied changes nothing.
func applyOp(state map[string]map[string]int64, op offsetOp) {
	if op.Delete {
		delete(state, op.Group)
		return
	}
	g := state[op.Group]
	if g == nil {
		g = map[string]int64{}
		state[op.Group] = g
	}
	for k, off := range op.Offsets {
		if cur, ok := g[k]; ok && off < cur && !op.Force {
			continue
		}
		g[k] = off
	}
}

// parseOffsets turns "topic/partition" keys into partitions, skipping any
// that do not parse.
func parseOffsets(m map[string]int64) map[tp]int64 {
	out := make(map[tp]int64, len(m))
	for k, off := range m {
		i := strings.LastIndexByte(k, '/')
		if i < 0 {
			continue
		}
		n, err := strconv.ParseInt(k[i+1:], 10, 32)
		if err != nil {
			continue
		}
		out[tp{Topic: k[:i], Partition: int32(n)}] = off
	}
	return out
}

// writeFileAtomic replaces path with data: a temporary file in the same
// folder, fsynced when sync is set, renamed over path, and the folder
// fsynced, so a crash leaves the old file or the new one.
func writeFileAtomic(path string, data []byte, sync bool) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if sync {
		if err := tmp.Sync(); err != nil {
			tmp.Close()
			return err
		}
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	if !sync {
		return nil
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
