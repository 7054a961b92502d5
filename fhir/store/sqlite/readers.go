package sqlite

import (
	"context"
	"errors"
	"sync"
)

// readers runs the store's reads on a few long-lived goroutines. A read
// goes deep into SQLite (the transpiled library has large frames), and a
// fresh goroutine, such as the one of each HTTP/2 request, grows and copies
// its stack several times on the way down; a reader keeps its grown stack
// from one read to the next.
type readers struct {
	jobs chan *readJob
	quit chan struct{}
	once sync.Once // closes quit
	wg   sync.WaitGroup
}

// errClosed is the error of a read after Close.
var errClosed = errors.New("sqlite store: closed")

type readJob struct {
	fn    func()
	done  chan struct{}
	panic any // what fn panicked with, raised again in the caller
}

var readJobs = sync.Pool{New: func() any { return &readJob{done: make(chan struct{}, 1)} }}

func startReaders(n int) *readers {
	r := &readers{jobs: make(chan *readJob), quit: make(chan struct{})}
	for range n {
		r.wg.Go(r.loop)
	}
	return r
}

func (r *readers) loop() {
	for {
		select {
		case j := <-r.jobs:
			j.run()
		case <-r.quit:
			return
		}
	}
}

func (j *readJob) run() {
	defer func() {
		j.panic = recover()
		j.done <- struct{}{}
	}()
	j.fn()
}

// do runs fn on a reader and waits for it. It returns ctx's error when ctx
// ends before a reader is free, and errClosed after stop.
func (r *readers) do(ctx context.Context, fn func()) error {
	j := readJobs.Get().(*readJob)
	j.fn = fn
	select {
	case r.jobs <- j:
	case <-ctx.Done():
		j.fn = nil
		readJobs.Put(j)
		return ctx.Err()
	case <-r.quit:
		j.fn = nil
		readJobs.Put(j)
		return errClosed
	}
	<-j.done
	p := j.panic
	j.fn, j.panic = nil, nil
	readJobs.Put(j)
	if p != nil {
		panic(p)
	}
	return nil
}

// stop ends the readers once their reads are done; it may be called more
// than once (as Close may).
func (r *readers) stop() {
	r.once.Do(func() { close(r.quit) })
	r.wg.Wait()
}
