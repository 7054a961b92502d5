package network

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/schakel-nl/schakel/audit"
	"github.com/schakel-nl/schakel/beeld"
	"github.com/schakel-nl/schakel/consult"
	"github.com/schakel-nl/schakel/internal/benchfloor"
	"github.com/schakel-nl/schakel/nl"
	"github.com/schakel-nl/schakel/oauth"
	"github.com/schakel-nl/schakel/plateau"
)

// startImagingNetwork runs a network with the hospital's PACS stand-in;
// the test peer (newPeer) is a partner of both nodes at plateau 1 with
// consent through Mitz, as the GP practice is.
func startImagingNetwork(t testing.TB, patients int) *Network {
	t.Helper()
	agreed := plateau.Uniform(1)
	agreed[plateau.Consent] = 4
	return upNetwork(t, Options{Patients: patients, Imaging: true,
		Agreements: []plateau.PartnerConfig{{URA: peerURA, Name: "Testpraktijk", Plateaus: agreed}}})
}

// imagingToken is an imaging token of the test peer at the hospital's node
// for one patient's images.
func imagingToken(t testing.TB, nw *Network, p *peer, bsn string) string {
	t.Helper()
	ctx := context.Background()
	md, err := p.oauth.Metadata(ctx, nw.HospNode.PublicURL())
	if err != nil {
		t.Fatal(err)
	}
	tok, err := p.oauth.Token(ctx, md.TokenEndpoint, oauth.TokenRequest{GrantType: consult.GrantTypeJWT,
		Scope: []string{beeld.Application}, Resource: nw.HospNode.PublicURL() + "/fhir/r4/" + Hospital.URA,
		AssertionClaims: map[string]any{plateau.ClaimUserID: DemoUser.UZI, plateau.ClaimUserRole: DemoUser.Role,
			plateau.ClaimUserRoleSystem: nl.SystemUZIRole, consult.AssertionRequesterType: "Z1", beeld.AssertionPatient: bsn}})
	if err != nil {
		t.Fatal(err)
	}
	return tok.AccessToken
}

func peerGet(t testing.TB, p *peer, u, token, accept string) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	res, err := p.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res, b
}

func TestImagingEndToEnd(t *testing.T) {
	nw := startImagingNetwork(t, 2)
	ctx := context.Background()
	run, err := nw.RunImaging(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := run.Result.Retrieved
	if !slices.Equal(run.Holders, []string{Hospital.URA}) || len(run.Result.Studies) != 2 || got == nil || !got.Verified || len(got.Instances) != len(run.Expected) {
		t.Fatalf("imaging run: %+v", run.Result)
	}
	// The hospital's node audited the GP's retrieval before answering it.
	recs, err := nw.HospNode.Audit().List(ctx, audit.Filter{ActorURA: GP.URA, Patient: run.Patient})
	if err != nil {
		t.Fatal(err)
	}
	var search, retrieval bool
	for _, r := range recs {
		search = search || r.Interaction == "search-type" && r.Outcome == http.StatusOK && len(r.Resources) == 2
		retrieval = retrieval || r.Interaction == "read" && r.Outcome == http.StatusOK && slices.Equal(r.Resources, []string{"ImagingStudy/" + got.Study})
	}
	if !search || !retrieval {
		t.Errorf("hospital audit of the GP's lookup (search %v) and retrieval (%v): %+v", search, retrieval, recs)
	}

	// The second patient permitted nothing at Mitz: the holder refuses.
	var res beeld.Result
	code := internal(t, nw.GPNode, nw.Token(GP.URA), http.MethodPost, "/internal/imaging", beeld.Request{PatientBSN: nw.Patients[1].BSN,
		HolderURA: Hospital.URA, User: &plateau.Caller{ID: DemoUser.UZI, Role: DemoUser.Role}, Retrieve: true}, &res)
	if code != http.StatusForbidden {
		t.Errorf("lookup of a patient without consent: %d, want 403", code)
	}

	// Announcing holdings: only a participant with a PACS, only a patient it holds studies of.
	if code := internal(t, nw.GPNode, nw.Token(GP.URA), http.MethodPost, "/internal/imaging/holdings",
		beeld.HoldingsRequest{Patient: nw.Patients[0].BSN}, nil); code != http.StatusConflict {
		t.Errorf("holdings of a participant without a PACS: %d, want 409", code)
	}
	if code := internal(t, nw.HospNode, nw.Token(Hospital.URA), http.MethodPost, "/internal/imaging/holdings",
		beeld.HoldingsRequest{Patient: "999990019"}, nil); code != http.StatusNotFound {
		t.Errorf("holdings of a patient without studies: %d, want 404", code)
	}
	if code := internal(t, nw.HospNode, nw.Token(Hospital.URA), http.MethodPost, "/internal/imaging/holdings",
		beeld.HoldingsRequest{Patient: "123456789"}, nil); code != http.StatusBadRequest {
		t.Errorf("holdings of an invalid BSN: %d, want 400", code)
	}

	p := newPeer(t, nw)
	mine, theirs := nw.Patients[0].BSN, nw.Patients[1].BSN
	var ownStudy, otherStudy *beeld.Study
	for _, st := range nw.PACSArchive().Studies() {
		switch st.Patient.BSN {
		case mine:
			ownStudy = st
		case theirs:
			otherStudy = st
		}
	}
	dicomweb := nw.HospNode.PublicURL() + "/dicomweb/" + Hospital.URA
	tok := imagingToken(t, nw, p, mine)

	resp, body := peerGet(t, p, dicomweb+"/studies/"+ownStudy.UID, tok, beeld.MediaStudy)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("WADO-RS of the token's patient's study: %d %s", resp.StatusCode, body)
	}
	var uids []string
	if err := beeld.ReadMultipart(resp.Header.Get("Content-Type"), strings.NewReader(string(body)), func(part io.Reader) error {
		b, _ := io.ReadAll(part)
		info, err := beeld.ParseInstance(b)
		uids = append(uids, info.SOPInstanceUID)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	slices.Sort(uids)
	if !slices.Equal(uids, beeld.SortedUIDs(ownStudy)) {
		t.Errorf("received %v, want %v", uids, beeld.SortedUIDs(ownStudy))
	}

	for _, c := range []struct {
		name, url, token string
		status           int
		reason           string
	}{
		{"no token", dicomweb + "/studies/" + ownStudy.UID, "", http.StatusUnauthorized, "access token"},
		{"another patient's study", dicomweb + "/studies/" + otherStudy.UID, tok, http.StatusForbidden, "not of the access token's patient"},
		{"imaging token at the R4 data endpoint", nw.HospNode.PublicURL() + "/fhir/r4/" + Hospital.URA + "/Patient?" +
			url.Values{"identifier": {beeld.SystemBSN + "|" + mine}}.Encode(), tok, http.StatusUnauthorized, "access token"},
		{"no consent", nw.HospNode.PublicURL() + "/fhir/r4/" + Hospital.URA + "/ImagingStudy?" +
			url.Values{"patient.identifier": {beeld.SystemBSN + "|" + theirs}}.Encode(), imagingToken(t, nw, p, theirs), http.StatusForbidden, "consent"},
	} {
		t.Run(c.name, func(t *testing.T) {
			resp, body := peerGet(t, p, c.url, c.token, "")
			var oo struct {
				ResourceType string
				Issue        []struct{ Diagnostics string }
			}
			_ = json.Unmarshal(body, &oo)
			if resp.StatusCode != c.status || oo.ResourceType != "OperationOutcome" || !strings.Contains(oo.Issue[0].Diagnostics, c.reason) {
				t.Fatalf("%d %s, want %d with %q", resp.StatusCode, body, c.status, c.reason)
			}
			recs, err := nw.HospNode.Audit().List(ctx, audit.Filter{ActorURA: peerURA, Newest: true, Limit: 1})
			if err != nil || len(recs) != 1 || recs[0].Outcome != c.status || !strings.Contains(recs[0].OutcomeText, c.reason) {
				t.Errorf("no audit record of the refusal: %+v %v", recs, err)
			}
		})
	}
}

// BenchmarkImagingWADO compares a WADO-RS retrieval of one study through
// the hospital's node (mTLS, access token, agreement, whose the study is
// (asked of the PACS, then kept StudyOwnerTTL), consent at the Mitz
// stand-in, a durable audit record, then the PACS's answer streamed)
// with the same retrieval directly from
// the PACS stand-in: "direct" plain HTTP on loopback, as the node reaches
// it inside the hospital, "direct-tls" the same over TLS 1.3. "small" is a demo study (two
// 16×16 images); "large" a study of 16 images of 512×512 (4 MiB), where
// the throughput, not the per-request checks, decides.
func BenchmarkImagingWADO(b *testing.B) {
	nw := startImagingNetwork(b, 1)
	benchfloor.Run(b, nw.opts.DataDir)
	ctx := context.Background()
	patient := ImagingPatient(nw.Patients[0])
	large, err := beeld.NewStudy(patient, 9, beeld.StudySpec{Description: "CT thorax", Date: "20261101",
		Series: []beeld.SeriesSpec{{Modality: "CT", Description: "Thorax", Instances: 16}}, Rows: 512, Columns: 512})
	if err != nil {
		b.Fatal(err)
	}
	nw.PACSArchive().Add(large)
	if err := permitAtMitz(ctx, nw.consent.Store(), patient.BSN, Hospital.URA); err != nil {
		b.Fatal(err)
	}
	p := newPeer(b, nw)
	tok := imagingToken(b, nw, p, patient.BSN)
	direct := &http.Client{}
	// The same PACS over TLS 1.3, as a PACS reachable from outside the
	// hospital's own network would have to be.
	tlsPACS := httptest.NewUnstartedServer(http.StripPrefix(pacsPrefix, (&beeld.PACS{Archive: nw.PACSArchive(), Prefix: pacsPrefix}).Handler()))
	tlsPACS.StartTLS()
	b.Cleanup(tlsPACS.Close)
	studies := map[string]*beeld.Study{"small": nw.PACSArchive().Studies()[0], "large": large}
	for _, size := range []string{"small", "large"} {
		st := studies[size]
		var bytes int64
		for _, in := range st.Series[0].Instances {
			bytes += int64(len(in.File))
		}
		for _, path := range []string{"direct", "direct-tls", "node"} {
			b.Run(size+"/"+path, func(b *testing.B) {
				u, hc, token := nw.PACSURL()+"/studies/"+st.UID, direct, ""
				switch path {
				case "direct-tls":
					u, hc = tlsPACS.URL+pacsPrefix+"/studies/"+st.UID, tlsPACS.Client()
				case "node":
					u, hc, token = nw.HospNode.PublicURL()+"/dicomweb/"+Hospital.URA+"/studies/"+st.UID, p.http, tok
				}
				get := func() {
					req, _ := http.NewRequest(http.MethodGet, u, nil)
					req.Header.Set("Accept", beeld.MediaStudy)
					if token != "" {
						req.Header.Set("Authorization", "Bearer "+token)
					}
					res, err := hc.Do(req)
					if err != nil {
						b.Fatal(err)
					}
					n, err := io.Copy(io.Discard, res.Body)
					res.Body.Close()
					if err != nil || res.StatusCode != http.StatusOK || n < bytes {
						b.Fatalf("%s: %d, %d bytes, %v", u, res.StatusCode, n, err)
					}
				}
				get() // warm connections
				b.SetBytes(bytes)
				b.ReportAllocs()
				cpu0 := processCPU()
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					get()
				}
				b.StopTimer()
				// Client, node(s) and PACS share this process: its CPU time
				// per retrieval is the whole path's work, which other work on
				// a shared machine does not inflate as it does wall time.
				b.ReportMetric(float64(processCPU()-cpu0)/float64(time.Millisecond)/float64(b.N), "cpu-ms/op")
			})
		}
	}
	// Four retrievals of the large study at a time, on both TLS paths:
	// the same clients with enough kept connections for all four, so that
	// no retrieval pays a handshake; concurrent retrievals through the
	// node share the audit log's group commits.
	st := large
	var bytes int64
	for _, in := range st.Series[0].Instances {
		bytes += int64(len(in.File))
	}
	for _, path := range []string{"direct-tls", "node"} {
		b.Run("large-4/"+path, func(b *testing.B) {
			u, tr, token := tlsPACS.URL+pacsPrefix+"/studies/"+st.UID, tlsPACS.Client().Transport.(*http.Transport).Clone(), ""
			if path == "node" {
				u, tr, token = nw.HospNode.PublicURL()+"/dicomweb/"+Hospital.URA+"/studies/"+st.UID, p.http.Transport.(*http.Transport).Clone(), tok
			}
			tr.MaxIdleConnsPerHost = 8
			hc := &http.Client{Transport: tr}
			b.Cleanup(hc.CloseIdleConnections)
			get := func() error {
				req, _ := http.NewRequest(http.MethodGet, u, nil)
				req.Header.Set("Accept", beeld.MediaStudy)
				if token != "" {
					req.Header.Set("Authorization", "Bearer "+token)
				}
				res, err := hc.Do(req)
				if err != nil {
					return err
				}
				n, err := io.Copy(io.Discard, res.Body)
				res.Body.Close()
				if err != nil || res.StatusCode != http.StatusOK || n < bytes {
					return fmt.Errorf("%s: %d, %d bytes, %v", u, res.StatusCode, n, err)
				}
				return nil
			}
			// Warm four connections.
			errs := make(chan error, 4)
			for range 4 {
				go func() { errs <- get() }()
			}
			for range 4 {
				if err := <-errs; err != nil {
					b.Fatal(err)
				}
			}
			b.SetBytes(bytes)
			b.ReportAllocs()
			b.SetParallelism((4 + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
			cpu0 := processCPU()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := get(); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.StopTimer()
			b.ReportMetric(float64(processCPU()-cpu0)/float64(time.Millisecond)/float64(b.N), "cpu-ms/op")
		})
	}
}

// processCPU is the CPU time (user and system) this process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
