// Package pebbleenv is the environment runnel's Pebble stores (log and
// internal/raftstore) run in: a file system that counts write-ahead log
// fsyncs and bytes written, so stores can report records per fsync and write
// amplification, and a logger and event listener that send Pebble's
// messages to slog.
package pebbleenv
