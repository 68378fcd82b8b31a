package partition

import (
	"fmt"
	"testing"
)

func TestNextChange(t *testing.T) {
	v := func(id string) Member { return Member{Server: Server{ID: id, Addr: id}, Voter: true} }
	nv := func(id string) Member { return Member{Server: Server{ID: id, Addr: id}} }
	s := func(ids ...string) []Server {
		var out []Server
		for _, id := range ids {
			out = append(out, Server{ID: id, Addr: id})
		}
		return out
	}
	for _, tc := range []struct {
		members []Member
		want    []Server
		self    string
		op      change
		server  string
	}{
		{[]Member{v("1"), v("2"), v("3")}, s("1", "2", "3"), "1", changeNone, ""},
		// New servers join first, as nonvoters, in the wanted order.
		{[]Member{v("1"), v("2"), v("3")}, s("4", "2", "5"), "1", changeAdd, "4"},
		{[]Member{v("1"), v("2"), v("3"), nv("4")}, s("4", "2", "5"), "1", changeAdd, "5"},
		// Then they are promoted.
		{[]Member{v("1"), v("2"), v("3"), nv("4"), nv("5")}, s("4", "2", "5"), "1", changePromote, "4"},
		// Then the others leave, nonvoters before voters, the leader last.
		{[]Member{v("1"), v("2"), v("3"), nv("6"), v("4"), v("5")}, s("4", "2", "5"), "1", changeRemove, "6"},
		{[]Member{v("1"), v("2"), v("3"), v("4"), v("5")}, s("4", "2", "5"), "1", changeRemove, "3"},
		{[]Member{v("1"), v("2"), v("4"), v("5")}, s("4", "2", "5"), "1", changeTransfer, "4"},
		{[]Member{v("2"), v("4"), v("5")}, s("4", "2", "5"), "4", changeNone, ""},
		// Fewer replicas: only removals.
		{[]Member{v("1"), v("2"), v("3")}, s("2"), "2", changeRemove, "1"},
	} {
		op, srv := nextChange(tc.members, tc.want, tc.self)
		if op != tc.op || srv.ID != tc.server {
			t.Errorf("%v to %v on %s: got %d %q, want %d %q", fmt.Sprint(tc.members), tc.want, tc.self, op, srv.ID, tc.op, tc.server)
		}
	}
}
