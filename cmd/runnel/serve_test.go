package main

import (
	"strings"
	"testing"
)

func TestParseMinFree(t *testing.T) {
	for in, want := range map[string]int64{
		"auto": 0, "0": -1, "512MiB": 512 << 20, "2GB": 2e9, "1g": 1 << 30, "100": 100, "64 kib": 64 << 10,
	} {
		got, err := parseMinFree(in)
		if err != nil || got != want {
			t.Errorf("parseMinFree(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "-1", "1.5GB", "12XB", "GB", "99999999999999999999", "9999999999TB"} {
		_, err := parseMinFree(in)
		if err == nil || !strings.Contains(err.Error(), "--min-free-disk") || !strings.Contains(err.Error(), "512MiB") {
			t.Errorf("parseMinFree(%q): %v; want an error naming the flag and an example", in, err)
		}
	}
}
