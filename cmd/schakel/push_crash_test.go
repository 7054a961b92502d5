package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/schakel-nl/schakel/correspondentie"
	"github.com/schakel-nl/schakel/internal/crashload"
	"github.com/schakel-nl/schakel/network"
	"github.com/schakel-nl/schakel/nl"
	"github.com/schakel-nl/schakel/push"
)

// Counts of the Push reliability test: small in the suite, set by hand for
// the full run (PUSHTEST_MESSAGES=1000 PUSHTEST_OUTAGE=1m). Not SCHAKEL_*:
// the node processes inherit the environment and refuse unknown SCHAKEL_
// configuration keys.
func pushCrashMessages(t *testing.T) int {
	if v := os.Getenv("PUSHTEST_MESSAGES"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("PUSHTEST_MESSAGES=%q", v)
		}
		return n
	}
	return 50
}

func pushOutage(t *testing.T) time.Duration {
	if v := os.Getenv("PUSHTEST_OUTAGE"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			t.Fatalf("PUSHTEST_OUTAGE=%q", v)
		}
		return d
	}
	return 3 * time.Second
}

// TestPushSurvivesCrashAndOutage runs the network with every node in a
// process of its own and sends Correspondentie letters from the hospital to
// the GP practice over Push.
//
// Receiver down: the GP practice's node is killed, letters are accepted
// (202) and wait in the hospital's outbox; when the node is back they are
// delivered, each once, each with its receipt.
//
// Sender killed: the hospital's node gets SIGKILL while its system keeps
// sending and its outbox is being delivered; restarted on the same data,
// it delivers every message it answered 202 exactly once (the GP's inbox
// holds each message id once, with the receipt the hospital stored), and
// nothing it did not accept shows up twice either.
func TestPushSurvivesCrashAndOutage(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a network of processes")
	}
	top := t
	// The children are this test binary running schakel's main.
	t.Setenv(runMainEnv, "1")
	ctx := context.Background()
	nw, err := network.UpProcesses(ctx, network.Options{DataDir: t.TempDir(), Patients: 1, Host: "127.0.0.1"}, os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nw.StopProcesses)
	procs := map[string]*network.Process{}
	for _, p := range nw.Processes() {
		procs[p.Name] = p
	}
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	hosp := &pushClient{base: nw.InternalURL(network.Hospital.URA), token: nw.Token(network.Hospital.URA), http: hc}
	gp := &pushClient{base: nw.InternalURL(network.GP.URA), token: nw.Token(network.GP.URA), http: hc}
	patient := nw.Patients[0]
	_, born, _ := nl.Patient(patient.Resources[0])
	letter := func(t *testing.T) json.RawMessage {
		b, err := correspondentie.Letter(correspondentie.LetterSpec{ID: uuid(), Type: correspondentie.DischargeLetter,
			PatientBSN: patient.BSN, PatientName: patient.Name, BirthDate: born, AuthorUZI: "900000123",
			AuthorName: "dr. M. Internist", CustodianURA: network.Hospital.URA, Custodian: network.Hospital.Name,
			Date: time.Now(), Text: "Ontslagbrief."})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	var accepted []string // every message id answered 202, both parts

	t.Run("receiver down", func(t *testing.T) {
		outage := pushOutage(t)
		gpNode := procs["gp-node"]
		kill(t, gpNode.PID)
		var ids []string
		for range 20 {
			id := uuid()
			if code, err := hosp.send(id, letter(t)); err != nil || code != http.StatusAccepted {
				t.Fatalf("send with the receiver down: %d %v", code, err)
			}
			ids = append(ids, id)
		}
		accepted = append(accepted, ids...)
		// The hospital's node tries, fails and keeps the letters queued.
		for i := 0; ; i++ {
			out := hosp.outbox(t)
			if m := out[ids[0]]; m.Status == push.StatusQueued && m.Attempts > 0 {
				t.Logf("receiver down: %s, attempt %d failed: %s", m.Status, m.Attempts, m.StatusReason)
				break
			}
			if i == 300 {
				t.Fatalf("no failed attempt recorded while the receiver is down: %+v", out[ids[0]])
			}
			time.Sleep(50 * time.Millisecond)
		}
		time.Sleep(outage) // the outage itself, not an assertion
		for _, id := range ids {
			if m := hosp.outbox(t)[id]; m.Status != push.StatusQueued {
				t.Fatalf("message %s is %s while the receiver is down", id, m.Status)
			}
		}
		restart(t, top, gpNode, nw.InternalURL(network.GP.URA))
		waitDelivered(t, hosp, ids, 5*time.Minute)
		checkOnce(t, hosp, gp, ids)
	})

	t.Run("sender killed", func(t *testing.T) {
		n := pushCrashMessages(t)
		hospNode := procs["hospital-node"]
		var mu sync.Mutex
		idOf := map[string]string{} // crashload id → message id
		answered := crashload.Run(8, n, func(cid string) bool {
			id := uuid()
			code, err := hosp.send(id, letter(t))
			if err != nil {
				return false // the node is gone
			}
			if code != http.StatusAccepted {
				t.Errorf("send %s: HTTP %d", id, code)
				return false
			}
			mu.Lock()
			idOf[cid] = id
			mu.Unlock()
			return true
		}, func() { _ = syscall.Kill(hospNode.PID, syscall.SIGKILL) }) // no shutdown: leases and all die with it
		var ids []string
		for _, cid := range answered {
			ids = append(ids, idOf[cid])
		}
		inboxAtKill := len(gp.inbox(t))
		t.Logf("sender killed: %d messages accepted (202); the GP's inbox held %d messages at that moment", len(ids), inboxAtKill)
		if !waitGone(hospNode.PID) {
			t.Fatal("the hospital's node survived SIGKILL")
		}
		accepted = append(accepted, ids...)
		start := time.Now()
		restart(t, top, hospNode, nw.InternalURL(network.Hospital.URA))
		waitDelivered(t, hosp, ids, 10*time.Minute)
		t.Logf("after the restart every accepted message was delivered in %s", time.Since(start).Round(time.Millisecond))
		checkOnce(t, hosp, gp, accepted)
	})
}

// pushClient is a participant's system on its node's internal Push API.
type pushClient struct {
	base, token string
	http        *http.Client
}

func (c *pushClient) send(id string, payload json.RawMessage) (int, error) {
	b, _ := json.Marshal(push.SendRequest{ID: id, ReceiverURA: network.GP.URA, Application: "correspondentie", Payload: payload})
	req, _ := http.NewRequest(http.MethodPost, c.base+"/internal/messages", bytes.NewReader(b))
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

func (c *pushClient) list(t *testing.T, direction string, out any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, c.base+"/internal/messages?direction="+direction, nil)
	req.Header.Set("Authorization", "Bearer "+c.token)
	resp, err := c.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("list %s: HTTP %d %s", direction, resp.StatusCode, b)
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		t.Fatal(err)
	}
}

// outbox is the sender's messages by id.
func (c *pushClient) outbox(t *testing.T) map[string]push.OutMessage {
	t.Helper()
	var list struct{ Messages []push.OutMessage }
	c.list(t, "sent", &list)
	out := map[string]push.OutMessage{}
	for _, m := range list.Messages {
		out[m.ID] = m
	}
	return out
}

func (c *pushClient) inbox(t *testing.T) []push.InMessage {
	t.Helper()
	var list struct{ Messages []push.InMessage }
	c.list(t, "received", &list)
	return list.Messages
}

// waitDelivered waits, bounded by limit, until every message of ids is
// delivered; a refused or failed one fails the test at once.
func waitDelivered(t *testing.T, sender *pushClient, ids []string, limit time.Duration) {
	t.Helper()
	const every = 100 * time.Millisecond
	for i := 0; ; i++ {
		out := sender.outbox(t)
		left := 0
		for _, id := range ids {
			switch m := out[id]; m.Status {
			case push.StatusDelivered:
			case push.StatusQueued:
				left++
			default:
				t.Fatalf("message %s accepted with 202 is %q at the sender: %s", id, m.Status, m.StatusReason)
			}
		}
		if left == 0 {
			return
		}
		if time.Duration(i)*every > limit {
			t.Fatalf("%d of %d messages still queued after %s", left, len(ids), limit)
		}
		time.Sleep(every)
	}
}

// checkOnce: the receiver's inbox holds each message id once, every id of
// ids among them, with the receipt the sender stored.
func checkOnce(t *testing.T, sender, receiver *pushClient, ids []string) {
	t.Helper()
	out := sender.outbox(t)
	seen := map[string]push.InMessage{}
	for _, in := range receiver.inbox(t) {
		if _, dup := seen[in.MessageID]; dup {
			t.Errorf("message %s stored twice in the receiver's inbox", in.MessageID)
		}
		seen[in.MessageID] = in
	}
	for _, id := range ids {
		in, ok := seen[id]
		switch {
		case !ok:
			t.Errorf("message %s accepted with 202 never reached the receiver", id)
		case out[id].Receipt == "" || in.Receipt != out[id].Receipt:
			t.Errorf("message %s: the sender's receipt %q is not the receiver's %q", id, out[id].Receipt, in.Receipt)
		case in.BodySHA256 != out[id].BodySHA256:
			t.Errorf("message %s: payload hash %s at the receiver, %s at the sender", id, in.BodySHA256, out[id].BodySHA256)
		}
	}
	t.Logf("%d accepted messages delivered once each; the receiver's inbox holds %d", len(ids), len(seen))
}

func kill(t *testing.T, pid int) {
	t.Helper()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if !waitGone(pid) {
		t.Fatalf("process %d survived SIGKILL", pid)
	}
}

// waitGone waits, bounded, until pid has ended (reaped by the network's
// watcher, or a zombie).
func waitGone(pid int) bool {
	return gone(pid)
}

// restart starts p again with the command the network recorded, and waits
// until both its public and its internal listener accept connections. It
// is stopped when owner (the test that runs the network) ends.
func restart(t, owner *testing.T, p *network.Process, internal string) {
	t.Helper()
	cmd := startLogged(t, p)
	owner.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	})
	waitListening(t, p, hostPort(t, p.URL), hostPort(t, internal))
}

// startLogged starts p again with the command the network recorded, its
// output appended to the log its first run wrote, where a failure to
// start again shows; the caller stops it.
func startLogged(t *testing.T, p *network.Process) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(p.Args[0], p.Args[1:]...)
	logf, err := os.OpenFile(p.Log, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close() // the child holds its own copy
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd
}

// waitListening waits up to 15 s for each of addrs (host:port) to accept a
// connection, and fails with the end of p's log when one does not.
func waitListening(t *testing.T, p *network.Process, addrs ...string) {
	t.Helper()
	for _, addr := range addrs {
		for i := 0; ; i++ {
			c, err := net.DialTimeout("tcp", addr, time.Second)
			if err == nil {
				c.Close()
				break
			}
			if i == 300 {
				t.Fatalf("restarted %s does not listen on %s after 15 s; the end of its log %s:\n%s",
					p.Name, addr, p.Log, logTail(p.Log, 40))
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// hostPort is the host:port of base, a URL.
func hostPort(t *testing.T, base string) string {
	t.Helper()
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	return u.Host
}

func uuid() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

// logTail is the last n lines of the file at path, or why it cannot be read.
func logTail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
