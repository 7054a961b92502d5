package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/schakel-nl/schakel/consult"
	"github.com/schakel-nl/schakel/correspondentie"
	"github.com/schakel-nl/schakel/network"
	"github.com/schakel-nl/schakel/nl"
	"github.com/schakel-nl/schakel/node"
	"github.com/schakel-nl/schakel/notifiedpull"
	"github.com/schakel-nl/schakel/plateau"
	"github.com/schakel-nl/schakel/push"
)

// replicaLoad is the participants' systems working through the balancers
// of a network of replicas: the GP practice refers (Notified Pull), the
// hospital sends letters (Push) and consults the GP practice's data
// (Direct Pull), in turn, from a few workers at once.
type replicaLoad struct {
	gp, hosp *xisClient
	nw       *network.Network
	label    string // in the referrals' descriptions
	user     atomic.Int64

	mu                 sync.Mutex
	referrals, letters []string // acknowledged: 201, 202
	reads              int      // acknowledged: 200 with every query answered
	failures           []string // clean failures: a broken connection, 502/503/504, a partial consultation
	unexpected         []string // answers that are neither
	servedBy           map[string]int
	n, done            atomic.Int64 // operations started, ended
}

func newReplicaLoad(nw *network.Network, gp, hosp *xisClient, label string) *replicaLoad {
	l := &replicaLoad{gp: gp, hosp: hosp, nw: nw, label: label, servedBy: map[string]int{}}
	l.user.Store(900030000)
	return l
}

// run runs workers until more, asked before each operation with its
// number, says stop; after, when set, is called after each operation with
// the number done so far.
func (l *replicaLoad) run(t *testing.T, workers int, more func(i int64) bool, after func(done int64)) {
	t.Helper()
	patient := l.nw.Patients[0]
	_, born, _ := nl.Patient(patient.Resources[0])
	acknowledged := map[string]int{"refer": http.StatusCreated, "push": http.StatusAccepted, "consult": http.StatusOK}
	clean := map[int]bool{http.StatusBadGateway: true, http.StatusServiceUnavailable: true, http.StatusGatewayTimeout: true}
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := l.n.Add(1) - 1
				if !more(i) {
					return
				}
				op := []string{"refer", "push", "consult"}[i%3]
				var (
					code    int
					body    []byte
					replica string
					err     error
					id      string
				)
				switch op {
				case "refer":
					code, body, replica, err = l.gp.do(http.MethodPost, "/internal/referrals", notifiedpull.ReferRequest{
						PatientBSN: patient.BSN, ReceiverURA: network.Hospital.URA, Application: "bgz", Description: fmt.Sprintf("%s %d", l.label, i)})
					var r node.Referral
					if err == nil && code == http.StatusCreated && json.Unmarshal(body, &r) == nil {
						id = r.ID
					}
				case "push":
					id = uuid()
					letter, lerr := correspondentie.Letter(correspondentie.LetterSpec{ID: id, Date: time.Now(),
						Type: correspondentie.DischargeLetter, PatientBSN: patient.BSN, PatientName: patient.Name, BirthDate: born,
						AuthorUZI: "900000123", AuthorName: "dr. M. Internist", CustodianURA: network.Hospital.URA,
						Custodian: network.Hospital.Name, Text: "Ontslagbrief."})
					if lerr != nil {
						t.Error(lerr)
						return
					}
					code, body, replica, err = l.hosp.do(http.MethodPost, "/internal/messages", push.SendRequest{
						ID: id, ReceiverURA: network.GP.URA, Application: "correspondentie", Payload: letter})
				case "consult":
					code, body, replica, err = l.hosp.do(http.MethodPost, "/internal/consult", consult.Request{PatientBSN: patient.BSN,
						HolderURA: network.GP.URA, Application: "bgz", User: &plateau.Caller{ID: strconv.FormatInt(l.user.Add(1), 10), Role: "01.016"}})
					var res consult.Result
					if err == nil && code == http.StatusOK && (json.Unmarshal(body, &res) != nil || !res.Complete) {
						code, body = -1, []byte(fmt.Sprintf("%d of %d queries answered", answered(res), len(res.Queries)))
					}
				}
				l.mu.Lock()
				switch {
				case err == nil && code == acknowledged[op]:
					l.servedBy[replica]++
					switch op {
					case "refer":
						l.referrals = append(l.referrals, id)
					case "push":
						l.letters = append(l.letters, id)
					default:
						l.reads++
					}
				case err != nil:
					l.failures = append(l.failures, fmt.Sprintf("%s: %v", op, err))
				case clean[code] || code == -1:
					l.failures = append(l.failures, fmt.Sprintf("%s: %d %s", op, code, clip(body)))
				default:
					l.unexpected = append(l.unexpected, fmt.Sprintf("%s: %d %s", op, code, clip(body)))
				}
				l.mu.Unlock()
				d := l.done.Add(1)
				if after != nil {
					after(d)
				}
			}
		}()
	}
	wg.Wait()
}

// summary is the load's outcome in one line.
func (l *replicaLoad) summary() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return fmt.Sprintf("%d operations: %d referrals, %d letters, %d reads acknowledged, %d failed, %d unexpected; internal answers by replica %v",
		l.done.Load(), len(l.referrals), len(l.letters), l.reads, len(l.failures), len(l.unexpected), l.servedBy)
}

// answered counts the queries of a consultation that the holder answered.
func answered(res consult.Result) int {
	n := 0
	for _, q := range res.Queries {
		if q.Status == http.StatusOK {
			n++
		}
	}
	return n
}
