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

// fileOffsets keeps a single node's committed offsets in one JSON file,
// replaced atomically (temporary file, fsync, rename, fsync of the folder).
// Commits that arrive while a write is under way wait for the next one and
// share it, so the file is written once per batch of commits, not once per
// commit.
type fileOffsets struct {
	path   string // "" keeps offsets in memory only
	noSync bool

	mu   sync.Mutex
	cur  map[string]map[tp]int64 // never modified in place once published
	next []*offsetWrite          // waiting for the next write
	busy bool                    // a writer is running
}

type offsetWrite struct {
	group string
	offs  map[tp]int64
	force bool
	del   bool
	done  chan error
}

// offsetsFile is the JSON form: group → "topic/partition" → offset.
type offsetsFile struct {
	Groups map[string]map[string]int64 `json:"groups"`
}

func openFileOffsets(path string, noSync bool) (*fileOffsets, error) {
	o := &fileOffsets{path: path, noSync: noSync, cur: map[string]map[tp]int64{}}
	if path == "" {
		return o, nil
	}
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return o, nil
	}
	if err != nil {
		return nil, err
	}
	var f offsetsFile
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("read committed offsets %s: %w", path, err)
	}
	for g, m := range f.Groups {
		offs := map[tp]int64{}
		for k, v := range m {
			i := strings.LastIndexByte(k, '/')
			p, err := strconv.ParseInt(k[i+1:], 10, 32)
			if i < 0 || err != nil {
				return nil, fmt.Errorf("read committed offsets %s: bad partition %q in group %s", path, k, g)
			}
			offs[tp{Topic: k[:i], Partition: int32(p)}] = v
		}
		o.cur[g] = offs
	}
	return o, nil
}

func (o *fileOffsets) commitOffsets(ctx context.Context, group string, offs map[tp]int64, force bool) error {
	return o.write(ctx, &offsetWrite{group: group, offs: offs, force: force})
}

func (o *fileOffsets) deleteOffsets(ctx context.Context, group string) error {
	return o.write(ctx, &offsetWrite{group: group, del: true})
}

func (o *fileOffsets) offsets(group string) map[tp]int64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	return maps.Clone(o.cur[group])
}

func (o *fileOffsets) groups() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return slices.Sorted(maps.Keys(o.cur))
}

// write queues w and, unless a writer is running, becomes the writer. The
// writer applies every queued change to a copy, writes the file and
// publishes the copy, until the queue is empty.
func (o *fileOffsets) write(ctx context.Context, w *offsetWrite) error {
	w.done = make(chan error, 1)
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
		state := maps.Clone(o.cur)
		o.mu.Unlock()
		for _, w := range batch {
			apply(state, w)
		}
		err := o.save(state)
		o.mu.Lock()
		if err == nil {
			o.cur = state
		}
		for _, w := range batch {
			w.done <- err
		}
	}
	o.busy = false
	o.mu.Unlock()
	return <-w.done
}

// apply applies one change to state, copying the group it changes.
func apply(state map[string]map[tp]int64, w *offsetWrite) {
	if w.del {
		delete(state, w.group)
		return
	}
	g := maps.Clone(state[w.group])
	if g == nil {
		g = map[tp]int64{}
	}
	for p, off := range w.offs {
		if cur, ok := g[p]; ok && off < cur && !w.force {
			continue
		}
		g[p] = off
	}
	state[w.group] = g
}

func (o *fileOffsets) save(state map[string]map[tp]int64) error {
	if o.path == "" {
		return nil
	}
	f := offsetsFile{Groups: map[string]map[string]int64{}}
	for g, offs := range state {
		m := map[string]int64{}
		for p, off := range offs {
			m[p.String()] = off
		}
		f.Groups[g] = m
	}
	data, err := json.Marshal(f)
	if err != nil {
		return err
	}
	return writeFileAtomic(o.path, data, !o.noSync)
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
