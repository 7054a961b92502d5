package network

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"time"

	"github.com/schakel-nl/schakel/careapp"
	"github.com/schakel-nl/schakel/nl"
	"github.com/schakel-nl/schakel/node"
	"github.com/schakel-nl/schakel/notifiedpull"
	"github.com/schakel-nl/schakel/plateau"
)

// Summary is the outcome of one exchange.
type Summary struct {
	Referral  string // the sender's referral id (notification identifier)
	Received  string // the receiver's id of the notification
	Patient   string
	Status    string // receiver's final status
	Sender    string // sender's final status
	Results   []notifiedpull.QueryResult
	Resources map[string]int // resource type → count in the pulled Bundle
	Total     int
	Took      time.Duration
	// Holders are the organisations the referral index names for the
	// patient afterwards, as far as the patient's consent permits.
	Holders []string
}

// xis is a participant's own system talking to its node's internal API —
// what a hospital's or GP's EHR does.
type xis struct {
	base, token string
	http        *http.Client
}

func (x *xis) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, _ := json.Marshal(in)
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, x.base+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+x.token)
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := x.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if resp.StatusCode/100 != 2 {
		var p struct {
			Detail string
			Issue  []struct{ Diagnostics string } // an OperationOutcome
		}
		_ = json.Unmarshal(b, &p)
		if p.Detail == "" && len(p.Issue) > 0 {
			p.Detail = p.Issue[0].Diagnostics
		}
		return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, p.Detail)
	}
	if out != nil {
		return json.Unmarshal(b, out)
	}
	return nil
}

// Exchange runs one BgZ Notified Pull for the first demo patient from the GP
// practice to the hospital, through the internal APIs as the participants'
// systems would, and waits until the hospital has the data.
func (nw *Network) Exchange(ctx context.Context) (*Summary, error) {
	user := plateau.Caller{ID: DemoUser.UZI, Role: DemoUser.Role, LoA: DemoUser.LoA}
	s, err := nw.notifiedPull(ctx, GP, Hospital, "the hospital's specialist", user, "Verwijzing interne geneeskunde")
	if err != nil {
		return s, err
	}
	// Later, a specialist at the hospital asks which organisations hold data
	// of the patient: the referral index answers, filtered by consent.
	hosp := &xis{base: nw.internalURLs[Hospital.URA], token: nw.Token(Hospital.URA), http: &http.Client{Timeout: 30 * time.Second}}
	var loc struct {
		Holders []struct {
			URA string `json:"URA"`
		}
		Warnings []string
	}
	if err := hosp.do(ctx, http.MethodPost, "/internal/localize", node.LocalizeRequest{Patient: s.Patient, Role: "01.016", UZI: "900012345"}, &loc); err != nil {
		return s, fmt.Errorf("localize: %w", err)
	}
	for _, h := range loc.Holders {
		s.Holders = append(s.Holders, h.URA)
	}
	return s, nil
}

// notifiedPull runs one BgZ Notified Pull of the first demo patient from
// sender to receiver through their nodes' internal APIs; when the
// receiver's node waits for a user to accept the referral (the agreement
// asks for user authentication), who (named so in the progress line)
// accepts it.
func (nw *Network) notifiedPull(ctx context.Context, sender, receiver Participant, who string, user plateau.Caller, description string) (*Summary, error) {
	if len(nw.Patients) == 0 {
		return nil, errors.New("no demo patients")
	}
	patient := nw.Patients[0]
	hc := &http.Client{Timeout: 30 * time.Second}
	gp := &xis{base: nw.internalURLs[sender.URA], token: nw.Token(sender.URA), http: hc}
	hosp := &xis{base: nw.internalURLs[receiver.URA], token: nw.Token(receiver.URA), http: hc}
	start := time.Now()
	nw.printf("\nExchange: %s refers patient %s to %s (%s, Notified Pull)\n", sender.Name, patient.Name, receiver.Name, nw.care(careapp.NotifiedPull))

	var sent node.Referral
	if err := gp.do(ctx, http.MethodPost, "/internal/referrals", notifiedpull.ReferRequest{
		PatientBSN: patient.BSN, ReceiverURA: receiver.URA, Application: nw.care(careapp.NotifiedPull), Description: description,
	}, &sent); err != nil {
		return nil, fmt.Errorf("refer: %w", err)
	}
	// The receiving participant's system waits for the referral to arrive
	// and its data to be pulled.
	var got node.Referral
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(60 * time.Second)
	for got.ID == "" || !notifiedpull.Final(got.Status) {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-deadline:
			return nil, fmt.Errorf("referral %s not completed within 60s (receiver status %q)", sent.ID, got.Status)
		case <-tick.C:
		}
		var list []node.Referral
		if err := hosp.do(ctx, http.MethodGet, "/internal/referrals?direction=received", nil, &list); err != nil {
			return nil, err
		}
		for _, r := range list {
			if r.Identifier == sent.ID {
				got = r
			}
		}
		if got.AwaitingUser {
			// The agreement asks for a user: the user accepts the
			// referral, and the pull carries the user's identity.
			nw.printf("  %s (%s %s, role %s) accepts the referral\n", who, idName(user.IDSystem), user.ID, user.Role)
			if err := hosp.do(ctx, http.MethodPost, "/internal/referrals/"+got.ID+"/accept", user, &got); err != nil {
				return nil, fmt.Errorf("accept: %w", err)
			}
		}
	}
	s := &Summary{Referral: sent.ID, Received: got.ID, Patient: patient.BSN, Status: got.Status, Results: got.Results,
		Resources: map[string]int{}}
	if got.Status != notifiedpull.StatusCompleted {
		return s, fmt.Errorf("the pull by %s ended %s: %s", receiver.Name, got.Status, got.StatusReason)
	}
	var bundle struct {
		Entry []struct {
			Resource struct{ ResourceType string } `json:"resource"`
		} `json:"entry"`
	}
	if err := hosp.do(ctx, http.MethodGet, "/internal/referrals/"+got.ID+"/data", nil, &bundle); err != nil {
		return s, err
	}
	for _, e := range bundle.Entry {
		s.Resources[e.Resource.ResourceType]++
		s.Total++
	}
	// The sender's view settles once the receiver has reported completion.
	status, err := gp.settled(ctx, sent.ID, time.Second)
	if err != nil {
		return s, err
	}
	s.Sender = status
	s.Took = time.Since(start)
	if s.Sender != notifiedpull.StatusCompleted {
		return s, fmt.Errorf("the sender's referral ended %q", s.Sender)
	}
	return s, nil
}

// settled polls the system's referral id until its status is final or
// within has passed, and returns the last status seen.
func (x *xis) settled(ctx context.Context, id string, within time.Duration) (string, error) {
	deadline := time.Now().Add(within)
	for {
		var mine node.Referral
		if err := x.do(ctx, http.MethodGet, "/internal/referrals/"+id, nil, &mine); err != nil {
			return "", err
		}
		if notifiedpull.Final(mine.Status) || time.Now().After(deadline) {
			return mine.Status, nil
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// idName names a user's identifier system in progress lines.
func idName(system string) string {
	if system == nl.SystemAGB {
		return "AGB"
	}
	return "UZI"
}

// PrintSummary writes the exchange summary: resources per BgZ block.
func (nw *Network) PrintSummary(s *Summary) {
	nw.printf("\nSummary: referral %s\n", s.Referral)
	nw.printf("  %-30s %8s %9s\n", "BgZ block", "matches", "included")
	for _, r := range s.Results {
		nw.printf("  %-30s %8d %9d\n", r.Block, r.Matches, r.Included)
	}
	types := make([]string, 0, len(s.Resources))
	for t := range s.Resources {
		types = append(types, t)
	}
	sort.Strings(types)
	nw.printf("  stored at the hospital: %d resources (", s.Total)
	for i, t := range types {
		if i > 0 {
			nw.printf(", ")
		}
		nw.printf("%s %d", t, s.Resources[t])
	}
	nw.printf(")\n  status: receiver %s, sender %s; took %s\n", s.Status, s.Sender, s.Took.Round(time.Millisecond))
	nw.printf("  referral index, filtered by consent: the patient's data is held by %v\n", s.Holders)
}
