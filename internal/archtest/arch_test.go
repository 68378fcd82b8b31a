package archtest

import (
	"bytes"
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/runnel-dev/runnel"

// allowed lists, for each package, the module packages it may import
// directly. Packages not listed (cmd, bench, examples, internal) may import
// anything but are never imported by the listed ones.
var allowed = map[string][]string{
	"record":         {},
	"log":            {"record", "internal/pebbleenv"},
	"partition":      {"log", "record", "consumergroup"},
	"consumergroup":  {"log", "record"},
	"broker":         {"consumergroup", "partition", "log", "record", "proto/runnelpb", "internal/raftmux", "internal/raftstore", "internal/pebbleenv"},
	"client":         {"consumergroup", "record", "proto/runnelpb"},
	"proto/runnelpb": {},
}

// noRPC lists packages that must not depend, even indirectly, on gRPC or
// the generated API types. (Protobuf itself comes in through Pebble's
// metrics, so it is not banned.)
var noRPC = []string{"record", "log", "partition", "consumergroup"}

type pkg struct {
	ImportPath string
	Imports    []string
	Deps       []string
}

func listPackages(t *testing.T) []pkg {
	t.Helper()
	out, err := exec.Command("go", "list", "-json", module+"/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	var pkgs []pkg
	dec := json.NewDecoder(bytes.NewReader(out))
	for dec.More() {
		var p pkg
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
	}
	return pkgs
}

func rel(path string) (string, bool) {
	if path == module {
		return "", true
	}
	r, ok := strings.CutPrefix(path, module+"/")
	return r, ok
}

// under reports whether p is the package name or one below it.
func under(p, name string) bool { return p == name || strings.HasPrefix(p, name+"/") }

func TestImportDirection(t *testing.T) {
	for _, p := range listPackages(t) {
		me, _ := rel(p.ImportPath)
		var rules []string
		var ruled bool
		for name, ok := range allowed {
			if under(me, name) {
				rules, ruled = ok, true
			}
		}
		if !ruled {
			continue
		}
		for _, imp := range p.Imports {
			dep, inModule := rel(imp)
			if !inModule {
				continue
			}
			ok := false
			for _, a := range rules {
				if under(dep, a) {
					ok = true
				}
			}
			// A package may import its own subpackages.
			for name := range allowed {
				if under(me, name) && under(dep, name) {
					ok = true
				}
			}
			if !ok {
				t.Errorf("%s imports %s; allowed: %v", me, dep, rules)
			}
		}
	}
}

func TestNoRPCBelowBroker(t *testing.T) {
	for _, p := range listPackages(t) {
		me, _ := rel(p.ImportPath)
		for _, name := range noRPC {
			if !under(me, name) {
				continue
			}
			for _, d := range p.Deps {
				if strings.HasPrefix(d, "google.golang.org/grpc") || d == module+"/proto/runnelpb" {
					t.Errorf("%s depends on %s; storage and replication stay free of RPC types", me, d)
				}
			}
		}
	}
}
