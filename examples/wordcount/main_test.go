package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/runnel-dev/runnel/client"
)

// plainCount is the single-process count the map/reduce must equal.
func plainCount(text string) string {
	n := map[string]int{}
	for _, w := range strings.Fields(text) {
		n[w]++
	}
	words := make([]string, 0, len(n))
	for w := range n {
		words = append(words, w)
	}
	slices.Sort(words)
	var b strings.Builder
	for _, w := range words {
		fmt.Fprintf(&b, "%s\t%d\n", w, n[w])
	}
	return b.String()
}

// generate returns lines of random words from a skewed vocabulary, with
// the odd empty line, run of spaces, tab and non-ASCII word.
func generate(lines int) string {
	r := rand.New(rand.NewPCG(7, 11))
	vocab := []string{"the", "a", "of", "runnel", "log", "Log", "log.", "café", "naïve", "日本", "x", "--", "42"}
	for i := range 400 {
		vocab = append(vocab, fmt.Sprintf("w%03d", i))
	}
	var b strings.Builder
	for range lines {
		n := r.IntN(12)
		for j := range n {
			if j > 0 {
				b.WriteString([]string{" ", "  ", "\t", " "}[r.IntN(4)])
			}
			// Squaring skews the choice toward the first words.
			f := r.Float64()
			b.WriteString(vocab[int(f*f*float64(len(vocab)))])
		}
		b.WriteByte('\n')
	}
	return b.String()
}

func TestWordCount(t *testing.T) {
	text := generate(3000)
	file := filepath.Join(t.TempDir(), "input.txt")
	if err := os.WriteFile(file, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	var out bytes.Buffer
	if err := run(ctx, config{input: file, splits: 4, reducers: 3, mappers: 2, out: &out}); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(plainCount(text), out.String()); diff != "" {
		t.Errorf("word count (-plain +map/reduce):\n%s", diff)
	}
}

func TestWordCountEmpty(t *testing.T) {
	file := filepath.Join(t.TempDir(), "empty.txt")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := run(t.Context(), config{input: file, splits: 2, reducers: 2, mappers: 1, out: &out}); err != nil {
		t.Fatal(err)
	}
	if out.Len() != 0 {
		t.Errorf("output for an empty file: %q", out.String())
	}
}

// TestWordCountMapperFails fails each mapper once in the middle of the
// input: the lines since the stage's last commit are mapped again, their
// counts produced again with the same message ids, and the reducers take
// each id once, so the counts are still exact.
func TestWordCountMapperFails(t *testing.T) {
	text := generate(2000)
	file := filepath.Join(t.TempDir(), "input.txt")
	if err := os.WriteFile(file, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	var (
		mu     sync.Mutex
		mapped int
		failed int
	)
	errFail := errors.New("mapper failed")
	hook := func(context.Context, *client.Record) error {
		mu.Lock()
		defer mu.Unlock()
		if mapped++; mapped%700 == 0 && failed < 2 {
			failed++
			return errFail
		}
		return nil
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	var out bytes.Buffer
	if err := run(ctx, config{input: file, splits: 4, reducers: 3, mappers: 2, out: &out, mapHook: hook}); err != nil {
		t.Fatal(err)
	}
	if failed != 2 {
		t.Errorf("mappers failed %d times, want 2", failed)
	}
	if mapped <= 2000+4 {
		t.Errorf("%d records mapped: nothing mapped again after the failures", mapped)
	}
	if diff := cmp.Diff(plainCount(text), out.String()); diff != "" {
		t.Errorf("word count (-plain +map/reduce):\n%s", diff)
	}
}
