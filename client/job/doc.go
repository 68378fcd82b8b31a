// Package job defines the records that runnel's task-queue layer passes
// around: the job a cron producer (or any program) publishes, the result a
// worker writes to a results topic, and the dead letter a worker writes when
// a job has used up its attempts.
//
// All three are JSON values of ordinary records. A job record has the job's
// name as its key and its ID in the MsgIDHeader header, so that the broker's
// dedupe window writes each ID once however many producers publish it:
//
//	rec := &client.Record{
//		Topic:   "jobs",
//		Key:     []byte(j.Name),
//		Value:   value, // j.Encode()
//		Headers: []client.Header{{Key: job.MsgIDHeader, Value: []byte(j.ID)}},
//	}
//
// A cron fire's ID is FireID(name, scheduled time), so two cron instances
// publishing the same fire produce one record.
//
// The types are plain values; nothing in the package keeps state, and all
// of it is safe to use from several goroutines.
package job
