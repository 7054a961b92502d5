package audit

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"testing"
	"time"
)

// FuzzDecodeSegment feeds arbitrary segment bytes to the journal reader. The
// seed corpus is in testdata/fuzz/FuzzDecodeSegment (whole, torn and
// corrupted segments); run with go test -fuzz=FuzzDecodeSegment ./audit.
func FuzzDecodeSegment(f *testing.F) {
	seg := seedSegment(f)
	f.Add(seg)
	f.Add(seg[:len(seg)-3])                // torn inside the last frame
	f.Add(seg[:len(journalMagic)+5])       // torn inside the first header
	f.Add([]byte(journalMagic))            // empty segment
	f.Add(append([]byte(nil), seg[:7]...)) // torn magic
	f.Fuzz(func(t *testing.T, data []byte) {
		frames, end, err := decodeSegment(data)
		if end < 0 || end > int64(len(data)) {
			t.Fatalf("end %d outside [0, %d]", end, len(data))
		}
		// The frames end at the end of data, or where the zeros a segment
		// is filled with ahead begin.
		clean := end == int64(len(data)) || (end+frameHead <= int64(len(data)) && allZero(data[end:]))
		if (err == nil) != (clean && end >= int64(len(journalMagic))) {
			t.Fatalf("err %v with end %d of %d", err, end, len(data))
		}
		if end < int64(len(journalMagic)) {
			if len(frames) != 0 || end != 0 {
				t.Fatalf("%d frames, end %d, from a segment without a header", len(frames), end)
			}
			return
		}
		// Only a torn write is cut off: a complete frame with a good CRC was
		// acknowledged, and one that does not decode must stop the reader.
		if err != nil && !errors.Is(err, errUndecodableFrame) && completeFrameAt(data, end) {
			t.Fatalf("complete frame at %d reported as a torn tail: %v", end, err)
		}
		// Every frame returned is exactly the bytes before end, CRC and all:
		// nothing is read past a torn tail and no bad checksum slips through.
		if got := encodeSegment(frames); !bytes.Equal(got, data[:end]) {
			t.Fatalf("frames re-encode to %x, want the %d bytes before the torn tail %x", got, end, data[:end])
		}
		// Cutting the tail off, as journal.load does, leaves a clean segment
		// with the same frames.
		again, end2, err := decodeSegment(data[:end])
		if err != nil || end2 != end || len(again) != len(frames) {
			t.Fatalf("segment cut at %d: %d frames, end %d, %v; want %d frames", end, len(again), end2, err, len(frames))
		}
		for _, fr := range frames {
			if fr.row != nil {
				if _, err := decodeBody(fr.row.body); err != nil {
					t.Fatalf("record with an undecodable body returned: %v", err)
				}
			}
		}
	})
}

// completeFrameAt reports whether data holds a whole frame with a matching
// CRC at off.
func completeFrameAt(data []byte, off int64) bool {
	if int64(len(data))-off < frameHead {
		return false
	}
	n := int64(binary.BigEndian.Uint32(data[off:]))
	if n == 0 || n > maxFramePayload || int64(len(data))-off-frameHead < n {
		return false
	}
	return crc32.Checksum(data[off+frameHead:off+frameHead+n], crcTable) == binary.BigEndian.Uint32(data[off+4:])
}

// encodeSegment writes frames the way journal.append does.
func encodeSegment(frames []journalFrame) []byte {
	buf := []byte(journalMagic)
	for _, fr := range frames {
		buf = appendFrame(buf, func(b []byte) []byte {
			if r := fr.row; r != nil {
				b = append(b, frameRecord)
				b = binary.BigEndian.AppendUint64(b, uint64(r.seq))
				b = append(append(b, r.prev...), r.hash...)
				return append(b, r.body...)
			}
			cp := fr.cp
			b = append(b, frameCheckpoint)
			b = binary.BigEndian.AppendUint64(b, uint64(cp.Seq))
			b = append(b, cp.Head...)
			b = binary.BigEndian.AppendUint64(b, uint64(cp.Time.UnixNano()))
			return append(b, cp.JWS...)
		})
	}
	return buf
}

// seedSegment is a segment of two chained records and a checkpoint.
func seedSegment(tb testing.TB) []byte {
	tb.Helper()
	var frames []journalFrame
	var head [32]byte
	for i := range 2 {
		rec := record(i)
		rec.EventID, rec.Time, rec.Node = "3f2b1c4e-0d5a-4c1b-9a7e-2f6d8b0c1a2e", time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), "node-a"
		body, err := encodeBody(rec)
		if err != nil {
			tb.Fatal(err)
		}
		prev := head
		head = chainHash(prev, body)
		frames = append(frames, journalFrame{row: &row{seq: int64(i + 1), prev: bytes32(prev), hash: bytes32(head), body: body}})
	}
	frames = append(frames, journalFrame{cp: &Checkpoint{Seq: 2, Head: bytes32(head), Time: time.Date(2026, 1, 2, 3, 4, 6, 0, time.UTC),
		JWS: "eyJhbGciOiJFUzI1NiJ9.eyJzZXEiOjJ9.c2ln"}})
	return encodeSegment(frames)
}
