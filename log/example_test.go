package log_test

import (
	"fmt"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/runnel-dev/runnel/log"
	"github.com/runnel-dev/runnel/record"
)

func Example() {
	s, err := log.Open("data", log.Options{FS: vfs.NewMem()})
	if err != nil {
		panic(err)
	}
	defer s.Close()
	l, err := s.Log(log.ID{Topic: 1, Partition: 0})
	if err != nil {
		panic(err)
	}
	for _, v := range []string{"hello", "world"} {
		b := record.Encode(record.Record{Value: []byte(v), Timestamp: 1000})
		if _, err := l.Append(b); err != nil {
			panic(err)
		}
	}
	batches, err := l.Read(0, 1<<20)
	if err != nil {
		panic(err)
	}
	for _, b := range batches {
		it := b.Iter()
		for it.Next() {
			r := it.Record()
			fmt.Println(r.Offset, string(r.Value))
		}
	}
	fmt.Println("end", l.End())
	// Output:
	// 0 hello
	// 1 world
	// end 2
}
