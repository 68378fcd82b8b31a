package broker

import (
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/runnel-dev/runnel/log"
)

// Topic config keys. Their names and meanings follow Kafka's.
const (
	// ConfigRetentionMs is the age in milliseconds after which whole batches
	// are deleted; -1 keeps them forever.
	ConfigRetentionMs = "retention.ms"
	// ConfigRetentionBytes is the size in bytes a partition may grow to
	// before its oldest batches are deleted; -1 means no limit.
	ConfigRetentionBytes = "retention.bytes"
	// ConfigMaxMessageBytes is the largest record batch the topic accepts.
	ConfigMaxMessageBytes = "max.message.bytes"
	// ConfigMaxBacklogRecords bounds, per partition, the records past the
	// offset its slowest queue group has settled: over it, produce is
	// refused with RESOURCE_EXHAUSTED until the consumers catch up. -1
	// means no limit; a partition without queue groups has no backlog.
	ConfigMaxBacklogRecords = "max.backlog.records"
)

type configSpec struct {
	def  int64
	min  int64
	max  int64
	help string
}

var configSpecs = map[string]configSpec{
	ConfigRetentionMs:       {def: 7 * 24 * 3600 * 1000, min: -1, max: 1<<63 - 1, help: "milliseconds, -1 for forever"},
	ConfigRetentionBytes:    {def: -1, min: -1, max: 1<<63 - 1, help: "bytes per partition, -1 for no limit"},
	ConfigMaxMessageBytes:   {def: 1 << 20, min: 1024, max: 64 << 20, help: "bytes, 1024 to 67108864"},
	ConfigMaxBacklogRecords: {def: -1, min: -1, max: 1<<63 - 1, help: "records per partition past the slowest queue group, -1 for no limit"},
}

// topicConfig is the parsed, effective config of a topic.
type topicConfig struct {
	RetentionMs     int64
	RetentionBytes  int64
	MaxMessageBytes int64
	// MaxBacklogRecords is -1 for no limit.
	MaxBacklogRecords int64
}

// validateConfigs checks keys and values and returns the effective config
// of set on top of the defaults.
func validateConfigs(set map[string]string) (topicConfig, error) {
	vals := map[string]int64{}
	for k, spec := range configSpecs {
		vals[k] = spec.def
	}
	for k, v := range set {
		spec, ok := configSpecs[k]
		if !ok {
			return topicConfig{}, errorf(ErrInvalidConfig, "unknown config %q; known: %s", k, strings.Join(slices.Sorted(maps.Keys(configSpecs)), ", "))
		}
		n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		if err != nil || n < spec.min || n > spec.max || (n == 0 && spec.min == -1) {
			return topicConfig{}, errorf(ErrInvalidConfig, "config %s=%q is not valid (%s)", k, v, spec.help)
		}
		vals[k] = n
	}
	return topicConfig{
		RetentionMs:       vals[ConfigRetentionMs],
		RetentionBytes:    vals[ConfigRetentionBytes],
		MaxMessageBytes:   vals[ConfigMaxMessageBytes],
		MaxBacklogRecords: vals[ConfigMaxBacklogRecords],
	}, nil
}

// effective returns every config key with its effective value.
func (c topicConfig) effective() map[string]string {
	return map[string]string{
		ConfigRetentionMs:       strconv.FormatInt(c.RetentionMs, 10),
		ConfigRetentionBytes:    strconv.FormatInt(c.RetentionBytes, 10),
		ConfigMaxMessageBytes:   strconv.FormatInt(c.MaxMessageBytes, 10),
		ConfigMaxBacklogRecords: strconv.FormatInt(c.MaxBacklogRecords, 10),
	}
}

func (c topicConfig) retention() log.Retention {
	var r log.Retention
	if c.RetentionMs > 0 {
		r.MaxAge = time.Duration(c.RetentionMs) * time.Millisecond
	}
	if c.RetentionBytes > 0 {
		r.MaxBytes = c.RetentionBytes
	}
	return r
}
