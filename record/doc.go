// Package record is runnel's record batch format: the one binary form records
// take from the producer, over gRPC, into storage and back out to consumers.
// The broker checks a batch's CRC and writes its base offset, but never
// re-encodes the records inside.
//
// A batch (all integers big-endian; modelled on Kafka's record batch v2):
//
//	offset size field
//	     0    8 base offset       assigned by the broker; not covered by the CRC
//	     8    4 length            bytes after this field
//	    12    1 magic             format version, 1
//	    13    4 crc               CRC-32C (Castagnoli) of bytes 17..end
//	    17    2 attributes        bits 0-2 compression (0 none); others reserved, 0
//	    19    4 last offset delta record count - 1
//	    23    8 base timestamp    ms since the Unix epoch; first record's timestamp
//	    31    8 max timestamp     largest record timestamp in the batch
//	    39    8 producer id       -1 when the producer is not idempotent
//	    47    2 producer epoch    -1 when unused
//	    49    4 base sequence     -1 when unused
//	    53    4 record count
//	    57    … records
//
// Each record (varints are zig-zag, as encoding/binary.PutVarint):
//
//	varint  length of the rest of the record
//	int8    attributes (0)
//	varint  timestamp delta from the base timestamp
//	varint  offset delta from the base offset
//	varint  key length, -1 for no key; key bytes
//	varint  value length, -1 for no value; value bytes
//	varint  header count; per header: varint key length, key,
//	        varint value length (-1 for none), value
//
// Batch is a view over encoded bytes; Builder encodes. Decoding never
// allocates per record: Record.Key, Value and header values alias the batch.
package record
