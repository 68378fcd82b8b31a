// Package pebbleenv is the environment runnel's Pebble stores (log and
// internal/raftstore) run in: a file system that counts write-ahead log
// fsyncs and bytes written, so stores can report records per fsync and write
// amplification; a file system that paces flushes and compactions so they
// do not hold up write-ahead log syncs (PacedFS), which a node's stores
// share; and a logger and event listener that send Pebble's messages to
// slog.
package pebbleenv
