package network

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/schakel-nl/schakel/geboortezorg"
	"github.com/schakel-nl/schakel/internal/benchfloor"
	"github.com/schakel-nl/schakel/node"
	"github.com/schakel-nl/schakel/push"
)

// BenchmarkTransfer measures Geboortezorg over Push between the midwife
// practice's node and the GP practice's, audit on at both, as the two
// practices' systems see it (internal APIs, state read back every 2 ms).
// "delivered": from the midwife's POST of the transfer until her node
// holds the GP node's verified, signed receipt. "acknowledged": the whole
// exchange — POST, the GP's system finds it in the inbox, fetches it,
// reads it (geboortezorg.Read) and marks it processed, until the
// acknowledgement has reached the midwife's node.
func BenchmarkTransfer(b *testing.B) {
	nw := startGeboortezorg(b)
	benchfloor.Run(b, nw.opts.DataDir)
	ctx := context.Background()
	hc := &http.Client{Timeout: 30 * time.Second}
	mw := &xis{base: nw.internalURLs[Midwife.URA], token: nw.Token(Midwife.URA), http: hc}
	gp := &xis{base: nw.internalURLs[GP.URA], token: nw.Token(GP.URA), http: hc}
	doc, err := geboortezorg.Document(geboortezorg.Demo(newID(), Midwife.URA, Midwife.Name, time.Now()))
	if err != nil {
		b.Fatal(err)
	}
	send := func(b *testing.B) string {
		var m push.OutMessage
		if err := mw.do(ctx, http.MethodPost, "/internal/messages", push.SendRequest{ID: newID(), ReceiverURA: GP.URA,
			Application: geboortezorg.Name, Payload: doc}, &m); err != nil {
			b.Fatal(err)
		}
		return m.ID
	}
	// await reads the midwife's message until done says so, at most 30 s.
	await := func(b *testing.B, id string, done func(node.MessageView) bool) {
		for range 15000 {
			var view node.MessageView
			if err := mw.do(ctx, http.MethodGet, "/internal/messages/"+id, nil, &view); err != nil {
				b.Fatal(err)
			}
			if view.OutMessage == nil || view.Status == push.StatusRefused || view.Status == push.StatusFailed {
				b.Fatalf("message %s not delivered: %+v", id, view.OutMessage)
			}
			if done(view) {
				return
			}
			time.Sleep(2 * time.Millisecond)
		}
		b.Fatalf("message %s: not within 30 s", id)
	}
	delivered := func(v node.MessageView) bool { return v.Status == push.StatusDelivered && v.Receipt != "" }
	acked := func(v node.MessageView) bool { return v.Ack != "" }
	// process is the GP's system: find the transfer, fetch, read, mark processed.
	process := func(b *testing.B, id string) {
		for range 15000 {
			var list struct{ Messages []push.InMessage }
			if err := gp.do(ctx, http.MethodGet, "/internal/messages?direction=received", nil, &list); err != nil {
				b.Fatal(err)
			}
			for _, m := range list.Messages {
				if m.MessageID != id {
					continue
				}
				var view node.MessageView
				if err := gp.do(ctx, http.MethodGet, "/internal/messages/"+m.ID, nil, &view); err != nil {
					b.Fatal(err)
				}
				if _, err := geboortezorg.Read(view.Payload); err != nil {
					b.Fatal(err)
				}
				if err := gp.do(ctx, http.MethodPost, "/internal/messages/"+m.ID+"/processed",
					map[string]string{"acknowledgement": push.AckAccepted}, nil); err != nil {
					b.Fatal(err)
				}
				return
			}
			time.Sleep(2 * time.Millisecond)
		}
		b.Fatalf("message %s never reached the GP's inbox", id)
	}
	// Warm caches: addressbook, token, key set.
	id := send(b)
	process(b, id)
	await(b, id, acked)

	// acknowledged first: the GP's inbox listing grows with every message.
	b.Run("acknowledged", func(b *testing.B) {
		for b.Loop() {
			id := send(b)
			process(b, id)
			await(b, id, acked)
		}
	})
	b.Run("delivered", func(b *testing.B) {
		for b.Loop() {
			await(b, send(b), delivered)
		}
		b.ReportMetric(float64(len(doc)), "payload-B")
	})
}
