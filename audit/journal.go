package audit

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The journal is the durable front of the SQLite store (docs/audit.md,
// "Journal"): every batch is appended to the current segment file and
// fdatasync'ed before its Appends are answered, and the SQLite index is
// written behind it. A segment is a magic line followed by frames:
//
//	u32 payload length | u32 CRC-32C of the payload | payload
//
// A payload is one record (kind 1: seq, prev, hash, canonical body) or one
// checkpoint (kind 2: seq, head, time in Unix nanoseconds, JWS), integers
// big-endian. The frames may be followed by zeros: a segment is zero-filled
// ahead of its end (journalChunk at a time), so that a batch overwrites
// blocks the file already has and its fdatasync writes the data alone, not
// a new file size as well (cheaper on ext4; the figures are in
// docs/audit.md). A frame header of zeros followed by nothing
// but zeros ends the frames; one followed by anything else is a torn write.
// Segments are removed once the index holds their frames durably.
const (
	journalMagic    = "SKAUDJ1\n"
	journalExt      = ".seg"
	frameHead       = 8
	frameRecord     = 1
	frameCheckpoint = 2
	// maxFramePayload bounds what a frame header may claim, so a torn or
	// corrupt length is recognised as such instead of read as a huge frame.
	maxFramePayload = 64 << 20
	// journalChunk is how much of a segment is zero-filled at a time,
	// ahead of the frames written into it.
	journalChunk = 1 << 20
)

// zeroChunk is what a segment is zero-filled with; it is only read.
var zeroChunk = make([]byte, journalChunk)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// journalFile is a segment open for writing; its Sync writes the file's
// data (and its size) to stable storage.
type journalFile interface {
	WriteAt(p []byte, off int64) (int, error)
	Truncate(size int64) error
	Sync() error
	Close() error
}

// osFile is a segment on disk: Sync is fdatasync where the platform has it.
type osFile struct{ *os.File }

func (f osFile) Sync() error { return datasync(f.File) }

// journal appends frames to numbered segment files in one directory. Only
// the committer calls append; only the indexer calls remove.
type journal struct {
	dir     string
	maxSize int64
	lock    *os.File  // held while the journal is open: one writer
	loaded  [2]uint64 // first and last segment load read; zero when none

	file journalFile
	num  uint64 // segment being appended to
	size int64  // where the frames end
	// zeroed is how far the segment is zero-filled; noZeroes is set once
	// a zero-fill failed: the segment then grows by its writes alone.
	zeroed   int64
	noZeroes bool
	// rotate asks for a fresh segment before the next write: the current
	// one is full, or a write to it failed (after a failed fdatasync the
	// kernel's view of its pages can no longer be trusted).
	rotate bool
	// broken is set when a failed write could not be cut off again: the
	// segment then ends in garbage, and nothing more may follow it.
	broken error
	buf    []byte
}

// journalFrame is one decoded frame: a record row or a checkpoint.
type journalFrame struct {
	row *row
	cp  *Checkpoint
}

// segmentNumbers returns the segment numbers in dir, in order.
func segmentNumbers(dir string) ([]uint64, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var nums []uint64
	for _, e := range ents {
		name, ok := strings.CutSuffix(e.Name(), journalExt)
		if !ok || e.IsDir() {
			continue
		}
		n, err := strconv.ParseUint(name, 10, 64)
		if err != nil {
			continue
		}
		nums = append(nums, n)
	}
	slices.Sort(nums)
	return nums, nil
}

func segmentPath(dir string, n uint64) string {
	return filepath.Join(dir, fmt.Sprintf("%012d%s", n, journalExt))
}

// readJournal decodes every segment in dir, changing nothing. A torn tail
// of the last segment (a write that was cut short by a crash, and so never
// acknowledged) is reported as the offset where the valid frames end, -1
// when there is none; journal.load cuts it off. A bad frame anywhere else
// is an error: acknowledged records would follow it.
func readJournal(dir string) (frames []journalFrame, nums []uint64, tornAt int64, err error) {
	nums, err = segmentNumbers(dir)
	if err != nil {
		return nil, nil, -1, fmt.Errorf("journal %s: %w", dir, err)
	}
	tornAt = -1
	for i, n := range nums {
		path := segmentPath(dir, n)
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, nil, -1, fmt.Errorf("journal: %w", err)
		}
		last := i == len(nums)-1
		seg, end, ferr := decodeSegment(data)
		if ferr != nil {
			if !last {
				return nil, nil, -1, fmt.Errorf("journal segment %s: %w at byte %d, and later segments follow it", path, ferr, end)
			}
			if errors.Is(ferr, errUndecodableFrame) {
				return nil, nil, -1, fmt.Errorf("journal segment %s: %w at byte %d; it was written whole, so it is not cut off", path, ferr, end)
			}
			tornAt = end
		}
		frames = append(frames, seg...)
	}
	return frames, nums, tornAt, nil
}

// errUndecodableFrame marks a frame that is whole (length and CRC-32C
// match) but does not decode: written by a bug or a newer version, never by
// a torn write, so the frames after it were acknowledged too.
var errUndecodableFrame = errors.New("complete frame that does not decode")

// decodeSegment returns the frames of one segment and where they end; err
// says why decoding stopped before the end of data.
func decodeSegment(data []byte) ([]journalFrame, int64, error) {
	if len(data) < len(journalMagic) {
		return nil, 0, errors.New("incomplete segment header")
	}
	if string(data[:len(journalMagic)]) != journalMagic {
		return nil, 0, errors.New("not an audit journal segment")
	}
	var out []journalFrame
	off := len(journalMagic)
	for off < len(data) {
		if len(data)-off < frameHead {
			return out, int64(off), errors.New("incomplete frame header")
		}
		n := binary.BigEndian.Uint32(data[off:])
		sum := binary.BigEndian.Uint32(data[off+4:])
		if n == 0 && sum == 0 && allZero(data[off+frameHead:]) {
			return out, int64(off), nil // the zero-filled rest of the segment
		}
		if n == 0 || n > maxFramePayload || int64(len(data)-off-frameHead) < int64(n) {
			return out, int64(off), errors.New("incomplete or invalid frame")
		}
		payload := data[off+frameHead : off+frameHead+int(n)]
		if crc32.Checksum(payload, crcTable) != sum {
			return out, int64(off), errors.New("frame checksum mismatch")
		}
		f, err := decodeFrame(payload)
		if err != nil {
			return out, int64(off), fmt.Errorf("%w: %w", errUndecodableFrame, err)
		}
		out = append(out, f)
		off += frameHead + int(n)
	}
	return out, int64(off), nil
}

func allZero(b []byte) bool {
	for len(b) >= len(zeroChunk) {
		if !bytes.Equal(b[:len(zeroChunk)], zeroChunk) {
			return false
		}
		b = b[len(zeroChunk):]
	}
	return bytes.Equal(b, zeroChunk[:len(b)])
}

func decodeFrame(p []byte) (journalFrame, error) {
	switch p[0] {
	case frameRecord:
		if len(p) < 1+8+32+32+1 {
			return journalFrame{}, errors.New("short record frame")
		}
		r := &row{seq: int64(binary.BigEndian.Uint64(p[1:])), prev: slices.Clone(p[9:41]), hash: slices.Clone(p[41:73]),
			body: slices.Clone(p[73:])}
		rec, err := decodeBody(r.body)
		if err != nil {
			return journalFrame{}, err
		}
		r.cols = columnsOf(rec)
		return journalFrame{row: r}, nil
	case frameCheckpoint:
		if len(p) < 1+8+32+8+1 {
			return journalFrame{}, errors.New("short checkpoint frame")
		}
		return journalFrame{cp: &Checkpoint{Seq: int64(binary.BigEndian.Uint64(p[1:])), Head: slices.Clone(p[9:41]),
			Time: time.Unix(0, int64(binary.BigEndian.Uint64(p[41:]))).UTC(), JWS: string(p[49:])}}, nil
	}
	return journalFrame{}, fmt.Errorf("unknown frame kind %d", p[0])
}

func appendFrame(buf []byte, payload func([]byte) []byte) []byte {
	at := len(buf)
	buf = append(buf, 0, 0, 0, 0, 0, 0, 0, 0)
	buf = payload(buf)
	p := buf[at+frameHead:]
	binary.BigEndian.PutUint32(buf[at:], uint32(len(p)))
	binary.BigEndian.PutUint32(buf[at+4:], crc32.Checksum(p, crcTable))
	return buf
}

// openJournal locks dir (creating it) for appending. Segments already
// there are the caller's to read with load.
func openJournal(dir string, maxSize int64) (*journal, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("journal: %w", err)
	}
	lock, err := lockFile(filepath.Join(dir, "lock"))
	if err != nil {
		return nil, fmt.Errorf("journal %s: %w", dir, err)
	}
	return &journal{dir: dir, maxSize: maxSize, lock: lock, rotate: true}, nil
}

// load returns the frames of the segments the journal held when it was
// opened, after cutting off a torn last write (logged), and numbers new
// segments after them. removeLoaded removes them once they are indexed.
func (j *journal) load(log *slog.Logger) ([]journalFrame, error) {
	frames, nums, tornAt, err := readJournal(j.dir)
	if err != nil {
		return nil, err
	}
	if len(nums) == 0 {
		return nil, nil
	}
	if tornAt >= 0 {
		last := segmentPath(j.dir, nums[len(nums)-1])
		fi, err := os.Stat(last)
		if err != nil {
			return nil, fmt.Errorf("journal: %w", err)
		}
		if err := os.Truncate(last, tornAt); err != nil {
			return nil, fmt.Errorf("journal: cut off the torn tail of %s: %w", last, err)
		}
		log.Warn("audit journal: cut off an incomplete last write", "segment", last, "bytes", fi.Size()-tornAt)
	}
	j.loaded = [2]uint64{nums[0], nums[len(nums)-1]}
	j.num = j.loaded[1]
	return frames, nil
}

// removeLoaded removes the segments load read.
func (j *journal) removeLoaded() error {
	if j.loaded[1] == 0 {
		return nil
	}
	return j.remove(j.loaded[0], j.loaded[1])
}

// append writes the batch as one write and makes it durable. It returns the
// segment the batch went to. On failure nothing of the batch remains in the
// journal (or the journal refuses every later batch).
func (j *journal) append(rows []row, cp *Checkpoint) (uint64, error) {
	if j.broken != nil {
		return 0, j.broken
	}
	if j.rotate {
		if err := j.next(); err != nil {
			return 0, err
		}
	}
	buf := j.buf[:0]
	for _, r := range rows {
		buf = appendFrame(buf, func(b []byte) []byte {
			b = append(b, frameRecord)
			b = binary.BigEndian.AppendUint64(b, uint64(r.seq))
			b = append(append(b, r.prev...), r.hash...)
			return append(b, r.body...)
		})
	}
	if cp != nil {
		buf = appendFrame(buf, func(b []byte) []byte {
			b = append(b, frameCheckpoint)
			b = binary.BigEndian.AppendUint64(b, uint64(cp.Seq))
			b = append(b, cp.Head...)
			b = binary.BigEndian.AppendUint64(b, uint64(cp.Time.UnixNano()))
			return append(b, cp.JWS...)
		})
	}
	j.buf = buf
	j.zeroAhead(j.size + int64(len(buf)))
	n, err := j.file.WriteAt(buf, j.size)
	if err == nil {
		err = j.file.Sync()
	}
	if err != nil {
		if terr := j.file.Truncate(j.size); terr != nil {
			j.broken = fmt.Errorf("journal segment %d ends in a failed write that could not be cut off (%w); restart the node to repair it", j.num, terr)
		}
		j.rotate = true
		return 0, fmt.Errorf("journal write: %w", err)
	}
	j.size += int64(n)
	if j.size >= j.maxSize {
		j.rotate = true
	}
	return j.num, nil
}

// zeroAhead zero-fills the segment past end, a chunk beyond the chunk end
// falls in, when it is not yet; the batch's fdatasync makes the zeros
// durable with it. The zeros only make later writes cheaper: when they
// cannot be written the segment grows by its writes, as a file does.
func (j *journal) zeroAhead(end int64) {
	if j.noZeroes || end <= j.zeroed {
		return
	}
	// Up to a chunk past the one end falls in, and not past the segment's
	// size (the batch that crosses it, the last, extends the file itself).
	target := min((end/journalChunk+2)*journalChunk, max(j.maxSize, end))
	for off := max(j.zeroed, j.size); off < target; {
		n := min(int64(len(zeroChunk)), target-off)
		if _, err := j.file.WriteAt(zeroChunk[:n], off); err != nil {
			// What was written is zeros past the frames: it reads as their end.
			j.noZeroes = true
			return
		}
		off += n
	}
	j.zeroed = target
}

// next closes the current segment and starts the following one. The new
// file's directory entry is made durable before any record goes into it.
func (j *journal) next() error {
	if j.file != nil {
		if err := j.file.Close(); err != nil {
			return fmt.Errorf("journal: close segment %d: %w", j.num, err)
		}
		j.file = nil
	}
	num := j.num + 1
	f, err := os.OpenFile(segmentPath(j.dir, num), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("journal: new segment: %w", err)
	}
	j.file, j.size, j.zeroed, j.noZeroes = osFile{f}, 0, 0, false
	j.zeroAhead(int64(len(journalMagic)))
	if _, err = f.WriteAt([]byte(journalMagic), 0); err == nil {
		if err = datasync(f); err == nil {
			err = syncDir(j.dir)
		}
	}
	if err != nil {
		f.Close()
		os.Remove(f.Name())
		j.file = nil
		return fmt.Errorf("journal: new segment: %w", err)
	}
	j.num, j.size, j.rotate = num, int64(len(journalMagic)), false
	return nil
}

// remove deletes segments first..last, which the index holds durably. A
// removal lost in a crash is harmless: the next open skips frames the index
// already has.
func (j *journal) remove(first, last uint64) error {
	var errs []error
	for n := first; n <= last; n++ {
		if err := os.Remove(segmentPath(j.dir, n)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// closeFile closes the segment being written; the journal stays locked.
func (j *journal) closeFile() error {
	if j.file == nil {
		return nil
	}
	err := j.file.Close()
	j.file = nil
	return err
}

// close closes the segment and releases the journal.
func (j *journal) close() error {
	err := j.closeFile()
	if j.lock != nil {
		j.lock.Close()
		j.lock = nil
	}
	return err
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// unindexed counts the records the journal in dir holds beyond the index's
// last record, without changing anything.
func unindexed(ctx context.Context, be backend, dir string) (int64, error) {
	frames, _, _, err := readJournal(dir)
	if err != nil {
		return 0, err
	}
	last, _, err := be.head(ctx)
	if err != nil {
		return 0, err
	}
	var n int64
	for _, f := range frames {
		if f.row != nil && f.row.seq > last {
			n++
		}
	}
	return n, nil
}
