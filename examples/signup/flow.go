package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"sync"

	"github.com/runnel-dev/runnel/client"
	"github.com/runnel-dev/runnel/client/pipeline"
)

// The topics of the flow.
const (
	signupsTopic      = "signups"            // new users, key the user id
	verifiedTopic     = "verified"           // users who followed their link
	welcomeTopic      = "welcome-email"      // copy of verified: send a welcome
	notifySetupTopic  = "notification-setup" // copy of verified: set up notices
	notifyEmailTopic  = "notify-email"       // users notified by email
	notifySMSTopic    = "notify-sms"         // users notified by SMS
	shardTopicPattern = "signups-shard-%d"   // new users by region
)

// User is the value of the flow's records.
type User struct {
	ID     string `json:"id"`
	Name   string `json:"name"`
	Email  string `json:"email"`
	Phone  string `json:"phone,omitempty"`
	Region string `json:"region"`
	// Notify is how the user wants notices: "sms" or "email".
	Notify string `json:"notify"`
}

// Message is what a sender sent.
type Message struct {
	// Key is the idempotency key: the message id of the record that
	// caused the message, the same when a stage reads it again.
	Key     string
	Channel string // "email" or "sms"
	To      string
	Text    string
	// By names the stage that sent it.
	By string
}

// Outbox is a fake sender that records what it sent, once per Key, as a
// provider with idempotency keys would, and counts the repeats it dropped.
type Outbox struct {
	mu      sync.Mutex
	sent    []Message
	keys    map[string]bool
	repeats int
	changed chan struct{}
}

// NewOutbox returns an empty Outbox.
func NewOutbox() *Outbox {
	return &Outbox{keys: map[string]bool{}, changed: make(chan struct{}, 1)}
}

// Send records m unless a message with its Key was sent.
func (o *Outbox) Send(_ context.Context, m Message) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.keys[m.Key] {
		o.repeats++
		return nil
	}
	o.keys[m.Key] = true
	o.sent = append(o.sent, m)
	select {
	case o.changed <- struct{}{}:
	default:
	}
	return nil
}

// Sent returns the messages sent, in order.
func (o *Outbox) Sent() []Message {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]Message(nil), o.sent...)
}

// Repeats returns how many messages were dropped as repeats of a Key.
func (o *Outbox) Repeats() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.repeats
}

// WaitFor waits until n messages were sent or ctx ends.
func (o *Outbox) WaitFor(ctx context.Context, n int) error {
	for {
		o.mu.Lock()
		got := len(o.sent)
		o.mu.Unlock()
		if got >= n {
			return nil
		}
		select {
		case <-o.changed:
		case <-ctx.Done():
			return fmt.Errorf("%d of %d messages sent: %w", got, n, ctx.Err())
		}
	}
}

// Senders are the fake senders of the flow.
type Senders struct {
	Verification, Welcome, NotifyEmail, NotifySMS *Outbox
}

// NewSenders returns empty outboxes.
func NewSenders() Senders {
	return Senders{NewOutbox(), NewOutbox(), NewOutbox(), NewOutbox()}
}

// Flow is the sign-up flow over shards shard topics.
type Flow struct {
	Shards  int
	Senders Senders
}

func (f Flow) shardTopics() []string {
	var ts []string
	for i := range f.Shards {
		ts = append(ts, fmt.Sprintf(shardTopicPattern, i))
	}
	return ts
}

// Topics returns every topic of the flow.
func (f Flow) Topics() []string {
	return append([]string{signupsTopic, verifiedTopic, welcomeTopic, notifySetupTopic, notifyEmailTopic, notifySMSTopic}, f.shardTopics()...)
}

// Stage is one pipeline stage of the flow.
type Stage struct {
	Group  string
	Inputs []string
	Func   pipeline.Func
}

// Stages returns the flow's stages:
//
//	signups ─shard by region─▶ signups-shard-N ─▶ send verification (one stage per shard)
//	verified ─copy─▶ welcome-email ─▶ send welcome
//	         └─────▶ notification-setup ─split─▶ notify-email ─▶ send email notice
//	                                        └──▶ notify-sms   ─▶ send SMS notice
func (f Flow) Stages() []Stage {
	region := func(r *client.Record) []byte {
		var u User
		json.Unmarshal(r.Value, &u)
		return []byte(u.Region)
	}
	stages := []Stage{
		{"signup-sharder", []string{signupsTopic}, pipeline.Shard(region, f.shardTopics()...)},
		{"verified-copier", []string{verifiedTopic}, pipeline.Copy(welcomeTopic, notifySetupTopic)},
		{"notification-splitter", []string{notifySetupTopic}, pipeline.Split(
			pipeline.Route{To: notifySMSTopic, Match: func(r *client.Record) bool {
				u, err := decode(r)
				return err == nil && u.Notify == "sms" && u.Phone != ""
			}},
			pipeline.Route{To: notifyEmailTopic, Match: func(r *client.Record) bool {
				u, err := decode(r)
				return err == nil && u.Notify != "sms"
			}},
		)},
		{"welcome-sender", []string{welcomeTopic}, send(f.Senders.Welcome, "welcome-sender", func(u User) (string, string, string) {
			return "email", u.Email, "Welcome, " + u.Name + "!"
		})},
		{"notify-email-sender", []string{notifyEmailTopic}, send(f.Senders.NotifyEmail, "notify-email-sender", func(u User) (string, string, string) {
			return "email", u.Email, "Notices for " + u.Name + " will come by email."
		})},
		{"notify-sms-sender", []string{notifySMSTopic}, send(f.Senders.NotifySMS, "notify-sms-sender", func(u User) (string, string, string) {
			return "sms", u.Phone, "Notices for " + u.Name + " will come by SMS."
		})},
	}
	for i, t := range f.shardTopics() {
		by := "verification-sender-" + strconv.Itoa(i)
		stages = append(stages, Stage{by, []string{t}, send(f.Senders.Verification, by, func(u User) (string, string, string) {
			return "email", u.Email, "Hi " + u.Name + ", follow https://example.com/verify/" + u.ID + " to verify your address."
		})})
	}
	return stages
}

// send returns a stage Func that sends the message compose makes of each
// user to o, keyed by the record's message id, and produces nothing.
func send(o *Outbox, by string, compose func(User) (channel, to, text string)) pipeline.Func {
	return func(ctx context.Context, in *client.Record) ([]*client.Record, error) {
		u, err := decode(in)
		if err != nil {
			return nil, err
		}
		channel, to, text := compose(u)
		return nil, o.Send(ctx, Message{Key: header(in, pipeline.MsgIDHeader), Channel: channel, To: to, Text: text, By: by})
	}
}

func decode(r *client.Record) (User, error) {
	var u User
	if err := json.Unmarshal(r.Value, &u); err != nil {
		return u, fmt.Errorf("user %q: %w", r.Key, err)
	}
	return u, nil
}

func header(r *client.Record, key string) string {
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

// UserRecord returns the record of u for topic.
func UserRecord(topic string, u User) *client.Record {
	v, _ := json.Marshal(u)
	return &client.Record{Topic: topic, Key: []byte(u.ID), Value: v}
}
