package job_test

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/runnel-dev/runnel/client/job"
	"github.com/runnel-dev/runnel/partition"
)

func TestMsgIDHeaderIsTheBrokers(t *testing.T) {
	if job.MsgIDHeader != partition.MsgIDHeader {
		t.Fatalf("job.MsgIDHeader = %q, partition.MsgIDHeader = %q", job.MsgIDHeader, partition.MsgIDHeader)
	}
}

func TestFireID(t *testing.T) {
	paris := time.FixedZone("CET", 3600)
	for _, tc := range []struct {
		at   time.Time
		want string
	}{
		{time.Date(2026, 11, 22, 16, 0, 0, 0, time.UTC), "backup@2026-11-22T16:00:00Z"},
		{time.Date(2026, 11, 22, 17, 0, 0, 0, paris), "backup@2026-11-22T16:00:00Z"},
		{time.Date(2026, 11, 22, 16, 0, 1, 500_000_000, time.UTC), "backup@2026-11-22T16:00:01.5Z"},
	} {
		if got := job.FireID("backup", tc.at); got != tc.want {
			t.Errorf("FireID(backup, %v) = %q, want %q", tc.at, got, tc.want)
		}
	}
}

func sample() job.Job {
	at := time.Date(2026, 11, 22, 16, 0, 0, 0, time.UTC)
	return job.Job{
		Version:     job.Version,
		ID:          job.FireID("backup", at),
		Name:        "backup",
		Command:     "echo hi",
		ScheduledAt: at,
		PublishedAt: at.Add(3 * time.Millisecond),
		Attempt:     1,
		MaxAttempts: 3,
		TimeoutMS:   2000,
	}
}

func TestRoundTrip(t *testing.T) {
	withPayload := sample()
	withPayload.Command = ""
	withPayload.Payload = json.RawMessage(`{"to":"a@example.com"}`)
	for _, j := range []job.Job{sample(), withPayload} {
		b, err := j.Encode()
		if err != nil {
			t.Fatal(err)
		}
		got, err := job.Decode(b)
		if err != nil {
			t.Fatalf("Decode(%s): %v", b, err)
		}
		if diff := cmp.Diff(j, got); diff != "" {
			t.Errorf("round trip (-want +got):\n%s", diff)
		}
	}
}

func TestWireNames(t *testing.T) {
	b, err := sample().Encode()
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"v":1,"id":"backup@2026-11-22T16:00:00Z","job":"backup","command":"echo hi",` +
		`"scheduled_at":"2026-11-22T16:00:00Z","published_at":"2026-11-22T16:00:00.003Z",` +
		`"attempt":1,"max_attempts":3,"timeout_ms":2000}`
	if string(b) != want {
		t.Errorf("Encode =\n%s\nwant\n%s", b, want)
	}
	if got := sample().Timeout(); got != 2*time.Second {
		t.Errorf("Timeout() = %v, want 2s", got)
	}
}

func TestDecodeErrors(t *testing.T) {
	for _, tc := range []struct {
		name, in, want string
	}{
		{"not json", `hello`, "not a job object"},
		{"array", `[1]`, "not a job object"},
		{"no version", `{"id":"a@1","job":"a","attempt":1}`, `no schema version`},
		{"newer version", `{"v":2,"id":"a@1","job":"a","attempt":1}`, "schema version 2 is not 1"},
		{"no id", `{"v":1,"job":"a","attempt":1}`, "empty id"},
		{"no name", `{"v":1,"id":"a@1","attempt":1}`, "empty name"},
		{"attempt 0", `{"v":1,"id":"a@1","job":"a"}`, "attempt 0"},
		{"negative max", `{"v":1,"id":"a@1","job":"a","attempt":1,"max_attempts":-1}`, "max_attempts -1"},
		{"negative timeout", `{"v":1,"id":"a@1","job":"a","attempt":1,"timeout_ms":-5}`, "timeout_ms -5"},
		{"bad time", `{"v":1,"id":"a@1","job":"a","attempt":1,"scheduled_at":"noon"}`, "not a job object"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := job.Decode([]byte(tc.in))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Decode(%s) = %v, want an error containing %q", tc.in, err, tc.want)
			}
		})
	}
}

func TestDecodeIgnoresUnknownFieldsAndNullPayload(t *testing.T) {
	j, err := job.Decode([]byte(`{"v":1,"id":"a@1","job":"a","attempt":2,"payload":null,"future":true}`))
	if err != nil {
		t.Fatal(err)
	}
	if j.Payload != nil || j.Attempt != 2 {
		t.Errorf("Decode = %+v, want no payload and attempt 2", j)
	}
}

func TestEncodeValidates(t *testing.T) {
	j := sample()
	j.Attempt = 0
	if _, err := j.Encode(); err == nil {
		t.Error("Encode of a job with attempt 0 succeeded")
	}
	j = sample()
	j.Payload = json.RawMessage(`{`)
	if _, err := j.Encode(); err == nil || !strings.Contains(err.Error(), "payload") {
		t.Errorf("Encode of a job with a broken payload = %v, want a payload error", err)
	}
}

func TestResultAndDeadLetter(t *testing.T) {
	code := 1
	r := job.Result{ID: "a@1", Name: "a", Attempt: 3, Outcome: job.OutcomeDead, ExitCode: &code,
		DurationMS: 12, FinishedAt: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	b, err := r.Encode()
	if err != nil {
		t.Fatal(err)
	}
	got, err := job.DecodeResult(b)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(r, got); diff != "" {
		t.Errorf("result round trip (-want +got):\n%s", diff)
	}
	if _, err := job.DecodeResult([]byte(`{"id":"a@1","outcome":"maybe"}`)); err == nil {
		t.Error("DecodeResult accepted outcome maybe")
	}

	d := job.DeadLetter{Job: sample(), Reason: "exit status 1", ExitCode: &code, Attempts: 3,
		Topic: "jobs", Partition: 2, Offset: 41, At: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	b, err = d.Encode()
	if err != nil {
		t.Fatal(err)
	}
	for _, field := range []string{`"job":{`, `"reason":`, `"exit_code":1`, `"attempts":3`} {
		if !bytes.Contains(b, []byte(field)) {
			t.Errorf("dead letter %s has no %s", b, field)
		}
	}
	gotD, err := job.DecodeDeadLetter(b)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(d, gotD); diff != "" {
		t.Errorf("dead letter round trip (-want +got):\n%s", diff)
	}
}

// FuzzDecode checks that Decode never panics and that whatever it accepts
// encodes and decodes back to the same job.
func FuzzDecode(f *testing.F) {
	b, _ := sample().Encode()
	f.Add(b)
	f.Add([]byte(`{"v":1,"id":"a@1","job":"a","attempt":1,"payload":{"x":[1,2,{}]}}`))
	f.Add([]byte(`{"v":1,"id":"a@1","job":"a","attempt":1,"payload":null}`))
	f.Add([]byte(`{"v":2}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, in []byte) {
		j, err := job.Decode(in)
		if err != nil {
			return
		}
		out, err := j.Encode()
		if err != nil {
			t.Fatalf("Decode accepted %q but Encode of the result failed: %v", in, err)
		}
		again, err := job.Decode(out)
		if err != nil {
			t.Fatalf("Decode(Encode(Decode(%q))) failed: %v", in, err)
		}
		var compact bytes.Buffer
		if len(j.Payload) > 0 {
			if err := json.Compact(&compact, j.Payload); err != nil {
				t.Fatal(err)
			}
			j.Payload = compact.Bytes()
		}
		if diff := cmp.Diff(j, again); diff != "" {
			t.Fatalf("round trip of %q (-first +second):\n%s", in, diff)
		}
	})
}
