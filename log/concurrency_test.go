package log

import (
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/runnel-dev/runnel/record"
)

// TestConcurrent appends to several logs from many goroutines while readers
// follow the logs with Wait and Read and retention runs. Every appended
// batch must be read back exactly once, at the offset Append returned, and
// offsets must be dense.
func TestConcurrent(t *testing.T) {
	fs := vfs.NewMem()
	s := openStore(t, fs, testOptions(fs))
	defer s.Close()
	ids := []ID{{1, 0}, {1, 1}, {2, 0}}
	const writers, perWriter = 8, 60

	type key struct {
		id   ID
		base int64
	}
	var (
		mu       sync.Mutex
		appended = make(map[key]string) // batch bytes by log and base
		wg       sync.WaitGroup
	)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perWriter {
				id := ids[(w+i)%len(ids)]
				l, err := s.Log(id)
				if err != nil {
					t.Error(err)
					return
				}
				b := record.Encode(record.Record{Value: fmt.Appendf(nil, "w%d-%d", w, i), Timestamp: int64(i)},
					record.Record{Value: []byte("second"), Timestamp: int64(i)})
				base, err := l.Append(b)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				appended[key{id, base}] = string(b)
				mu.Unlock()
			}
		}()
	}

	want := int64(writers * perWriter * 2 / len(ids))
	var rwg sync.WaitGroup
	got := make([]map[int64]string, len(ids))
	for i, id := range ids {
		got[i] = make(map[int64]string)
		rwg.Add(1)
		go func() {
			defer rwg.Done()
			l, err := s.Log(id)
			if err != nil {
				t.Error(err)
				return
			}
			for from := int64(0); from < want; {
				w := l.Wait()
				if from == l.End() {
					<-w
					continue
				}
				bs, err := l.Read(from, 300)
				if err != nil {
					t.Error(err)
					return
				}
				for _, b := range bs {
					if b.BaseOffset() != from {
						t.Errorf("log %s: batch at %d, want %d", id, b.BaseOffset(), from)
						return
					}
					got[i][from] = string(b)
					from = b.NextOffset()
				}
				if _, err := l.OffsetForTime(int64(from % 7)); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	// Retention on a fourth log runs alongside.
	rwg.Add(1)
	go func() {
		defer rwg.Done()
		l, err := s.Log(ID{9, 9})
		if err != nil {
			t.Error(err)
			return
		}
		l.SetRetention(Retention{MaxBytes: 200})
		for i := range 100 {
			if _, err := l.Append(batch("r", int64(i))); err != nil {
				t.Error(err)
				return
			}
			if err := l.EnforceRetention(); err != nil {
				t.Error(err)
				return
			}
			if _, err := l.Read(l.Start(), 100); err != nil && !errors.Is(err, ErrOffsetOutOfRange) {
				t.Error(err)
				return
			}
		}
	}()
	wg.Wait()
	rwg.Wait()
	if t.Failed() {
		return
	}
	n := 0
	for i, id := range ids {
		l := mustLog(t, s, id)
		if l.End() != want {
			t.Errorf("log %s: end %d, want %d", id, l.End(), want)
		}
		for base, b := range got[i] {
			if appended[key{id, base}] != b {
				t.Errorf("log %s: batch at %d was not appended there", id, base)
			}
			n++
		}
	}
	if n != len(appended) {
		t.Errorf("read %d batches, appended %d", n, len(appended))
	}
}
