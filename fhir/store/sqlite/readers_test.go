package sqlite

import (
	"context"
	"errors"
	"testing"
)

func TestReaders(t *testing.T) {
	r := startReaders(2)
	ran := false
	if err := r.do(context.Background(), func() { ran = true }); err != nil || !ran {
		t.Fatalf("do: ran %v, err %v", ran, err)
	}
	func() {
		defer func() {
			if p := recover(); p != "boom" {
				t.Errorf("recovered %v, want the read's panic", p)
			}
		}()
		r.do(context.Background(), func() { panic("boom") })
		t.Error("a read's panic did not reach its caller")
	}()
	// The readers survive a panic.
	if err := r.do(context.Background(), func() {}); err != nil {
		t.Fatal(err)
	}
	// A caller whose context ends while every reader is busy gives up.
	block, started := make(chan struct{}), make(chan struct{}, 2)
	for range 2 {
		go r.do(context.Background(), func() { started <- struct{}{}; <-block })
	}
	<-started
	<-started
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := r.do(ctx, func() { t.Error("ran with every reader busy and the context done") }); !errors.Is(err, context.Canceled) {
		t.Errorf("err %v, want context.Canceled", err)
	}
	close(block)
	r.stop()
	r.stop()
	if err := r.do(context.Background(), func() { t.Error("ran after stop") }); !errors.Is(err, errClosed) {
		t.Errorf("after stop: err %v, want errClosed", err)
	}
}
