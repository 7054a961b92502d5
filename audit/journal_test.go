package audit

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// chainedRows returns n rows that continue a chain ending at (seq, head).
func chainedRows(t *testing.T, seq int64, head [32]byte, n int) []row {
	t.Helper()
	var rows []row
	for i := range n {
		rec := record(int(seq) + i)
		rec.EventID, rec.Time, rec.Node = newID(), time.Now(), "node-a"
		body, err := encodeBody(rec)
		if err != nil {
			t.Fatal(err)
		}
		seq++
		prev := head
		head = chainHash(prev, body)
		rows = append(rows, row{seq: seq, prev: bytes32(prev), hash: bytes32(head), body: body, cols: columnsOf(rec)})
	}
	return rows
}

// writeJournal appends batches to a journal in dir, as a node would have
// before it crashed, and returns the segment files.
func writeJournal(t *testing.T, dir string, maxSize int64, batches ...[]row) []string {
	t.Helper()
	j, err := openJournal(dir, maxSize)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range batches {
		if _, err := j.append(b, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := j.close(); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*"+journalExt))
	return files
}

// closedStore returns a store with n records, closed (its journal is gone),
// and the head of its chain.
func closedStore(t *testing.T, n int) (*testStore, int64, [32]byte) {
	t.Helper()
	s := newTestStore(t, Config{Path: filepath.Join(t.TempDir(), "audit.db")}, nil)
	for i := range n {
		if err := s.Append(context.Background(), record(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if files, _ := filepath.Glob(filepath.Join(s.cfg.Path+".journal", "*"+journalExt)); len(files) != 0 {
		t.Fatalf("a cleanly closed store left journal segments: %v", files)
	}
	return s, s.seq, s.head
}

func reopen(t *testing.T, ts *testStore) (*Store, error) {
	t.Helper()
	s, err := OpenWith(context.Background(), ts.cfg)
	if err == nil {
		t.Cleanup(func() { s.Close() })
	}
	return s, err
}

func verifyClosed(t *testing.T, ts *testStore, s *Store, want int64) {
	t.Helper()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	cfg := ts.cfg
	cfg.ReadOnly, cfg.Key = true, nil
	ro, err := OpenWith(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	rep, err := Verify(context.Background(), ro, ts.keys)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() || rep.Records != want || rep.LastAnchored != want || rep.Unindexed != 0 {
		t.Errorf("verify: %+v, want %d records, all anchored", rep, want)
	}
}

func TestJournalReplayedIntoIndexOnOpen(t *testing.T) {
	ctx := context.Background()
	ts, seq, head := closedStore(t, 2)
	// A crash: three batches reached the journal, none the index, and the
	// last write was torn halfway.
	rows := chainedRows(t, seq, head, 6)
	files := writeJournal(t, ts.cfg.Path+".journal", journalSegmentBytes, rows[0:1], rows[1:4], rows[4:5])
	torn := append([]byte(nil), frameOf(t, rows[5:6])...)
	appendFile(t, files[len(files)-1], torn[:len(torn)/2])

	// Read-only, nothing changes, and the report says what waits in the journal.
	cfg := ts.cfg
	cfg.ReadOnly, cfg.Key = true, nil
	ro, err := OpenWith(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	// What a reader sees: the index's last record, and how much waits.
	if ro.LastSeq() != 2 || ro.Unindexed() != 5 {
		t.Errorf("read-only store: LastSeq %d, Unindexed %d; want 2 and 5", ro.LastSeq(), ro.Unindexed())
	}
	rep, err := Verify(ctx, ro, ts.keys)
	ro.Close()
	if err != nil || !rep.OK() || rep.Records != 2 || rep.Unindexed != 5 {
		t.Fatalf("read-only verify before the replay: %+v, %v; want 2 records and 5 unindexed", rep, err)
	}

	s, err := reopen(t, ts)
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.List(ctx, Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 7 {
		t.Fatalf("after the replay the store holds %d records, want 7 (2 + 5 journaled; the torn one was never answered)", len(got))
	}
	for i, r := range rows[:5] {
		if got[2+i].EventID != r.cols.EventID || got[2+i].Seq != r.seq {
			t.Errorf("record %d: got %s/%d, want %s/%d", i, got[2+i].EventID, got[2+i].Seq, r.cols.EventID, r.seq)
		}
	}
	if err := s.Append(ctx, record(9)); err != nil { // the chain goes on after the replayed records
		t.Fatal(err)
	}
	verifyClosed(t, ts, s, 8)
	if files, _ := filepath.Glob(filepath.Join(ts.cfg.Path+".journal", "*"+journalExt)); len(files) != 0 {
		t.Errorf("replayed segments left behind: %v", files)
	}
}

func frameOf(t *testing.T, rows []row) []byte {
	dir := t.TempDir()
	files := writeJournal(t, dir, journalSegmentBytes, rows)
	data, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	_, end, err := decodeSegment(data) // without the zeros ahead
	if err != nil {
		t.Fatal(err)
	}
	return data[len(journalMagic):end]
}

// appendFile writes data into the segment at path after its last frame,
// over the zeros ahead, as the journal itself writes a batch.
func appendFile(t *testing.T, path string, data []byte) {
	seg, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	_, end, _ := decodeSegment(seg)
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(data, end); err != nil {
		t.Fatal(err)
	}
}

func TestJournalThatDoesNotContinueTheStoreIsRefused(t *testing.T) {
	cases := map[string]func(t *testing.T, seq int64, head [32]byte) []row{
		"gap": func(t *testing.T, seq int64, head [32]byte) []row {
			return chainedRows(t, seq, head, 3)[1:] // the first journaled record is missing
		},
		"other chain": func(t *testing.T, seq int64, _ [32]byte) []row {
			return chainedRows(t, seq, [32]byte{1}, 2) // links to a head the store does not have
		},
	}
	for name, rows := range cases {
		t.Run(name, func(t *testing.T) {
			ts, seq, head := closedStore(t, 2)
			writeJournal(t, ts.cfg.Path+".journal", journalSegmentBytes, rows(t, seq, head))
			_, err := reopen(t, ts)
			if err == nil || !strings.Contains(err.Error(), "does not continue the audit store") {
				t.Fatalf("open with a journal that does not continue the store: %v", err)
			}
		})
	}
}

func TestJournalCorruptSegmentBeforeTheLastIsRefused(t *testing.T) {
	ts, seq, head := closedStore(t, 1)
	rows := chainedRows(t, seq, head, 40)
	// Small segments: every batch of ten rows starts a new one.
	files := writeJournal(t, ts.cfg.Path+".journal", 1024, rows[0:10], rows[10:20], rows[20:30], rows[30:40])
	if len(files) < 3 {
		t.Fatalf("want several segments, got %v", files)
	}
	data, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)/2] ^= 0xff
	if err := os.WriteFile(files[0], data, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = reopen(t, ts)
	if err == nil || !strings.Contains(err.Error(), "later segments follow it") {
		t.Fatalf("open with a corrupt segment before the last: %v", err)
	}
}

// faultyFile fails writes (after writing half, as a full disk does) while
// failWrite is set, and truncates while failTruncate is not.
type faultyFile struct {
	journalFile
	failWrite, failTruncate atomic.Bool
}

func (f *faultyFile) WriteAt(p []byte, off int64) (int, error) {
	if f.failWrite.Load() {
		n, _ := f.journalFile.WriteAt(p[:len(p)/2], off)
		return n, syscall.ENOSPC
	}
	return f.journalFile.WriteAt(p, off)
}

func (f *faultyFile) Truncate(size int64) error {
	if f.failTruncate.Load() {
		return syscall.EIO
	}
	return f.journalFile.Truncate(size)
}

// storeOnFullDisk returns a store with one record whose second Append
// failed on a full disk (the failing write cut off again, or, with
// failTruncate, not), and the segment file that keeps failing writes.
func storeOnFullDisk(t *testing.T, failTruncate bool) (*testStore, *faultyFile) {
	t.Helper()
	ctx := context.Background()
	s := newTestStore(t, Config{Path: filepath.Join(t.TempDir(), "audit.db")}, nil)
	if err := s.Append(ctx, record(0)); err != nil {
		t.Fatal(err)
	}
	j := s.be.(*journaled).j
	ff := &faultyFile{journalFile: j.file}
	ff.failWrite.Store(true)
	ff.failTruncate.Store(failTruncate)
	j.file = ff
	if err := s.Append(ctx, record(1)); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("append on a full disk: %v, want ErrUnavailable", err)
	}
	return s, ff
}

func TestJournalWriteFailureRefusesTheBatchAndKeepsTheChain(t *testing.T) {
	ctx := context.Background()
	t.Run("cut off", func(t *testing.T) {
		s, _ := storeOnFullDisk(t, false)
		// The next batch goes to a fresh segment; the half-written one was cut off.
		if err := s.Append(ctx, record(2)); err != nil {
			t.Fatalf("append after the disk has room again: %v", err)
		}
		verifyClosed(t, s, s.Store, 2)
	})
	t.Run("cannot be cut off", func(t *testing.T) {
		s, ff := storeOnFullDisk(t, true)
		// The segment ends in garbage that could not be removed: nothing may
		// follow it until a restart repairs it.
		ff.failWrite.Store(false)
		if err := s.Append(ctx, record(2)); !errors.Is(err, ErrUnavailable) {
			t.Fatalf("append after a write that could not be cut off: %v, want ErrUnavailable", err)
		}
		s.Close()
		s2, err := reopen(t, s)
		if err != nil {
			t.Fatal(err)
		}
		if err := s2.Append(ctx, record(3)); err != nil {
			t.Fatal(err)
		}
		verifyClosed(t, s, s2, 2)
	})
}

func TestJournalHasOneWriter(t *testing.T) {
	s := newTestStore(t, Config{Path: filepath.Join(t.TempDir(), "audit.db")}, nil)
	if _, err := reopen(t, s); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("a second writer on an open store: %v, want it refused", err)
	}
	s.Close()
	if _, err := reopen(t, s); err != nil {
		t.Fatalf("open after the first writer closed: %v", err)
	}
}

func TestJournalSegmentsAreRemovedOnceIndexed(t *testing.T) {
	ctx := context.Background()
	s := newTestStore(t, Config{Path: filepath.Join(t.TempDir(), "audit.db"), Logger: slog.New(slog.DiscardHandler)}, nil)
	s.be.(*journaled).j.maxSize = 4096 // a few batches per segment
	for i := range 200 {
		if err := s.Append(ctx, record(i)); err != nil {
			t.Fatal(err)
		}
	}
	segments := func() []string {
		files, _ := filepath.Glob(filepath.Join(s.cfg.Path+".journal", "*"+journalExt))
		return files
	}
	if _, err := s.List(ctx, Filter{}); err != nil {
		t.Fatal(err)
	}
	// Every segment but the one being written, and the one whose batches the
	// index took last, is gone.
	eventually(t, "indexed segments are removed", func() bool { return len(segments()) <= 2 })
	last := segments()[len(segments())-1]
	if !bytes.HasSuffix([]byte(last), []byte(journalExt)) {
		t.Fatalf("unexpected segment name %s", last)
	}
	verifyClosed(t, s, s.Store, 200)
	if left := segments(); len(left) != 0 {
		t.Errorf("segments left after a clean close: %v", left)
	}
}

func TestJournalUndecodableLastFrameIsRefused(t *testing.T) {
	ts, seq, head := closedStore(t, 1)
	rows := chainedRows(t, seq, head, 3)
	files := writeJournal(t, ts.cfg.Path+".journal", journalSegmentBytes, rows)
	// A complete frame with a good CRC but of a kind this version does not
	// know (a newer node's, say), followed by acknowledged records: cutting
	// it off as a torn write would drop them all.
	unknown := appendFrame(nil, func(b []byte) []byte { return append(b, 9, 1, 2, 3) })
	appendFile(t, files[0], append(unknown, frameOf(t, chainedRows(t, seq+3, [32]byte(rows[2].hash), 2))...))
	before, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	if _, err := reopen(t, ts); err == nil || !strings.Contains(err.Error(), "unknown frame kind 9") {
		t.Fatalf("open with an undecodable complete frame: %v", err)
	}
	if after, err := os.ReadFile(files[0]); err != nil || !bytes.Equal(after, before) {
		t.Fatalf("the segment was changed (%d bytes, was %d): %v", len(after), len(before), err)
	}
}

// A segment is zero-filled ahead of its frames, a chunk or more at a time
// and never past its size: the frames read back whole, the zeros as their
// clean end (not a torn write to cut off).
func TestJournalSegmentsAreZeroFilledAhead(t *testing.T) {
	dir := t.TempDir()
	const maxSize = 3*journalChunk + journalChunk/2
	j, err := openJournal(dir, maxSize)
	if err != nil {
		t.Fatal(err)
	}
	defer j.close()
	rows := chainedRows(t, 0, [32]byte{}, 4000)
	var ends []int64
	for len(rows) > 0 {
		n := min(len(rows), 50)
		if _, err := j.append(rows[:n], nil); err != nil {
			t.Fatal(err)
		}
		rows = rows[n:]
		if j.rotate {
			break
		}
		fi, err := os.Stat(segmentPath(dir, j.num))
		if err != nil {
			t.Fatal(err)
		}
		ends = append(ends, j.size)
		if fi.Size() <= j.size && j.size < maxSize {
			t.Fatalf("segment of %d bytes with frames up to %d: not zero-filled ahead", fi.Size(), j.size)
		}
		if fi.Size() > max(int64(maxSize), j.size) {
			t.Fatalf("segment of %d bytes, past its size %d", fi.Size(), int64(maxSize))
		}
	}
	if len(ends) < 2 || ends[len(ends)-1] <= 2*journalChunk {
		t.Fatalf("the test did not write past two chunks: %v", ends)
	}
	frames, _, tornAt, err := readJournal(dir)
	if err != nil || tornAt != -1 {
		t.Fatalf("reading a zero-filled journal: torn at %d, %v", tornAt, err)
	}
	if want := 4000 - len(rows); len(frames) != want {
		t.Fatalf("%d frames read back, want %d", len(frames), want)
	}
}

// Zeros end the frames only when nothing but zeros follows: a zero header
// before written bytes is a torn write (a later sector reached the disk,
// the header's did not).
func TestJournalZeroHeaderBeforeDataIsTorn(t *testing.T) {
	seg := append([]byte(journalMagic), frameOf(t, chainedRows(t, 0, [32]byte{}, 1))...)
	clean := append(slices.Clone(seg), make([]byte, 4096)...)
	if frames, end, err := decodeSegment(clean); err != nil || len(frames) != 1 || end != int64(len(seg)) {
		t.Fatalf("frames then zeros: %d frames, end %d, %v; want 1 frame ending at %d", len(frames), end, err, len(seg))
	}
	torn := slices.Clone(clean)
	torn[len(torn)-100] = 7
	if frames, end, err := decodeSegment(torn); err == nil || len(frames) != 1 || end != int64(len(seg)) {
		t.Fatalf("zero header before data: %d frames, end %d, %v; want torn at %d", len(frames), end, err, len(seg))
	}
}
