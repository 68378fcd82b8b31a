package broker

import (
	"strings"
	"testing"
)

func TestTopicAndGroupNames(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"orders", true},
		{"Orders.v2_eu-west", true},
		{"a", true},
		{strings.Repeat("x", 249), true},
		{"..a", true},
		{"", false},
		{strings.Repeat("x", 250), false},
		{".", false},
		{"..", false},
		{"orders/eu", false},
		{"orders eu", false},
		{"ordérs", false},
		{"a\x00", false},
		{"a+b", false},
	} {
		if err := validateTopicName(tc.name); (err == nil) != tc.ok {
			t.Errorf("validateTopicName(%q) = %v, want ok %v", tc.name, err, tc.ok)
		}
		if err := validateGroupName(tc.name); (err == nil) != tc.ok {
			t.Errorf("validateGroupName(%q) = %v, want ok %v", tc.name, err, tc.ok)
		}
	}
}
