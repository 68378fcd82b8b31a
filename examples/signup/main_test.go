package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/runnel-dev/runnel/client"
)

// TestSignup runs the flow for 24 users, with the welcome sender failing
// once in the middle (it is restarted and reads its input again), and
// checks what the fake senders sent: one verification per user, every
// user of a region through one shard's sender, one welcome per user, and
// one notice per user by the channel they chose.
func TestSignup(t *testing.T) {
	regions := []string{"eu", "us", "ap"}
	var users []User
	for i := range 24 {
		u := User{ID: fmt.Sprintf("u%02d", i), Name: fmt.Sprintf("User %d", i), Email: fmt.Sprintf("u%02d@example.com", i),
			Region: regions[i%3], Notify: "email"}
		if i%4 == 1 {
			u.Notify, u.Phone = "sms", fmt.Sprintf("+1 555 01%02d", i)
		}
		users = append(users, u)
	}
	flow := Flow{Shards: 4, Senders: NewSenders()}
	errCrash := errors.New("welcome sender crashed")
	failed := false
	wrap := func(s Stage) Stage {
		if s.Group != "welcome-sender" {
			return s
		}
		f, n := s.Func, 0
		s.Func = func(ctx context.Context, in *client.Record) ([]*client.Record, error) {
			if n++; n == 10 && !failed {
				failed = true
				return nil, errCrash
			}
			return f(ctx, in)
		}
		return s
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if err := run(ctx, config{flow: flow, users: users, out: io.Discard, wrap: wrap}); err != nil {
		t.Fatal(err)
	}
	if !failed {
		t.Error("the welcome sender never failed")
	}

	byUser := func(o *Outbox, channel string) map[string]Message {
		t.Helper()
		m := map[string]Message{}
		for _, msg := range o.Sent() {
			if msg.Channel != channel {
				t.Errorf("%s message on %s: %+v", msg.Channel, channel, msg)
			}
			if _, dup := m[msg.To]; dup {
				t.Errorf("two messages to %s: %+v", msg.To, msg)
			}
			m[msg.To] = msg
		}
		return m
	}
	verif := byUser(flow.Senders.Verification, "email")
	welcome := byUser(flow.Senders.Welcome, "email")
	byEmail := byUser(flow.Senders.NotifyEmail, "email")
	bySMS := byUser(flow.Senders.NotifySMS, "sms")
	shardOf := map[string]string{}
	for _, u := range users {
		v, ok := verif[u.Email]
		if !ok {
			t.Errorf("%s: no verification email", u.ID)
		} else if prev, ok := shardOf[u.Region]; ok && prev != v.By {
			t.Errorf("region %s verified by %s and %s", u.Region, prev, v.By)
		} else {
			shardOf[u.Region] = v.By
		}
		if _, ok := welcome[u.Email]; !ok {
			t.Errorf("%s: no welcome", u.ID)
		}
		_, email := byEmail[u.Email]
		_, sms := bySMS[u.Phone]
		if u.Notify == "sms" && (!sms || email) || u.Notify == "email" && (!email || sms) {
			t.Errorf("%s wants notices by %s; set up by email %v, by SMS %v", u.ID, u.Notify, email, sms)
		}
	}
	if len(verif) != len(users) || len(welcome) != len(users) || len(byEmail)+len(bySMS) != len(users) {
		t.Errorf("%d verifications, %d welcomes, %d+%d notices for %d users", len(verif), len(welcome), len(byEmail), len(bySMS), len(users))
	}
	t.Logf("welcome messages dropped as repeats after the restart: %d", flow.Senders.Welcome.Repeats())
}
