// Package e2e runs the runnel binary as a user would: real processes, real
// sockets, kill -9.
package e2e
