// Package archtest holds the test that enforces the direction of imports
// between runnel's packages (DESIGN.md, "Layout").
package archtest
