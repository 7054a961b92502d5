package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/schakel-nl/schakel/consult"
	"github.com/schakel-nl/schakel/demo"
	"github.com/schakel-nl/schakel/network"
	"github.com/schakel-nl/schakel/node"
	"github.com/schakel-nl/schakel/validation/kits"
)

// component is one process of `network up --processes`, as it prints it.
type component struct {
	pid           int
	url, internal string
	tokenFile     string
	restart       string
	restartArgs   []string
}

// parseProcesses reads the component lines network up --processes prints.
func parseProcesses(t *testing.T, out string) map[string]*component {
	t.Helper()
	comps := map[string]*component{}
	var last *component
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) >= 4 && f[1] == "pid":
			pid, err := strconv.Atoi(f[2])
			if err != nil {
				t.Fatalf("pid in %q: %v", line, err)
			}
			last = &component{pid: pid, url: f[3]}
			comps[f[0]] = last
		case last != nil && len(f) >= 2 && f[0] == "internal":
			last.internal = f[1]
			if _, tok, ok := strings.Cut(line, "token in "); ok {
				last.tokenFile = strings.TrimSuffix(strings.TrimSpace(tok), ")")
			}
		case last != nil && len(f) >= 2 && f[0] == "restart:":
			last.restart = strings.Join(f[1:], " ")
			last.restartArgs = f[1:] // the test's paths need no quoting
		}
	}
	for _, name := range []string{"addressbook", "consent", "consent-portal", "localization", "gp-node", "hospital-node"} {
		if c := comps[name]; c == nil || c.pid == 0 || c.restart == "" {
			t.Fatalf("no pid and restart command for %s in:\n%s", name, out)
		}
	}
	return comps
}

// alive reports whether pid is a running process (not a zombie).
func alive(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return !errors.Is(err, os.ErrNotExist)
	}
	// The state follows the command name in parentheses.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

// gone waits, bounded, until none of pids runs.
func gone(pids ...int) bool {
	for i := 0; i < 200; i++ {
		left := 0
		for _, p := range pids {
			if alive(p) {
				left++
			}
		}
		if left == 0 {
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	return false
}

// TestNetworkUpProcessesOnce: `schakel network up --processes --once` runs
// every component as its own process, completes the exchange, exits 0 and
// leaves no process behind.
func TestNetworkUpProcessesOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a network of processes")
	}
	cmd := exec.Command(os.Args[0], "network", "up", "--processes", "--once", "--data-dir", t.TempDir(), "--log-level", "warn")
	cmd.Env = append(os.Environ(), runMainEnv+"=1")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("network up --processes --once: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "status: receiver completed, sender completed") {
		t.Fatalf("no completed exchange in:\n%s", out.String())
	}
	var pids []int
	for _, c := range parseProcesses(t, out.String()) {
		pids = append(pids, c.pid)
	}
	if !gone(pids...) {
		t.Fatalf("components still running after network up --once exited: %v", pids)
	}
}

// TestNetworkProcessesConsentServiceKilled: under --processes the consent
// service playing Mitz is killed with SIGKILL while the hospital keeps
// consulting the GP practice. From that moment consults are refused (the
// first, or at the latest the second); once the service is restarted with
// the command the network printed, consults succeed again without
// restarting a node. Killing the network process then takes every
// component with it.
func TestNetworkProcessesConsentServiceKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a network of processes")
	}
	cmd := exec.Command(os.Args[0], "network", "up", "--processes", "--data-dir", t.TempDir(), "--log-level", "warn")
	cmd.Env = append(os.Environ(), runMainEnv+"=1")
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	var out strings.Builder
	rd := bufio.NewReader(stdout)
	for !strings.Contains(out.String(), "Network running") {
		line, err := rd.ReadString('\n')
		out.WriteString(line)
		if err != nil {
			t.Fatalf("network ended before running: %v\n%s", err, out.String())
		}
	}
	go io.Copy(io.Discard, rd) //nolint:errcheck // drain
	comps := parseProcesses(t, out.String())
	hosp := comps["hospital-node"]
	token, err := os.ReadFile(hosp.tokenFile)
	if err != nil {
		t.Fatal(err)
	}
	patients, err := demo.Generate(demo.Options{Count: 1, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}

	// Each consult names another requesting user, so that its consent
	// question is not answered from the GP node's cache.
	user := 900020000
	hc := &http.Client{Timeout: 30 * time.Second}
	consultOK := func() (bool, string) {
		user++
		b, _ := json.Marshal(consult.Request{PatientBSN: patients[0].BSN, HolderURA: network.GP.URA, Application: "bgz",
			UserID: strconv.Itoa(user), UserRole: "01.016"})
		req, _ := http.NewRequest(http.MethodPost, hosp.internal+"/internal/consult", bytes.NewReader(b))
		req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))
		req.Header.Set("Content-Type", "application/json")
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatalf("consult: %v", err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		var res consult.Result
		if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &res) != nil {
			return false, fmt.Sprintf("status %d %s", resp.StatusCode, body)
		}
		return res.Complete && res.Resources > 0, fmt.Sprintf("complete %v, %d resources", res.Complete, res.Resources)
	}

	for i := 0; i < 3; i++ {
		if ok, detail := consultOK(); !ok {
			t.Fatalf("consult %d before the kill: %s", i, detail)
		}
	}
	if err := syscall.Kill(comps["consent"].pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if !gone(comps["consent"].pid) {
		t.Fatal("consent service survived SIGKILL")
	}
	first, detail1 := consultOK()
	second, detail2 := consultOK()
	t.Logf("after the kill: %s; %s", detail1, detail2)
	if first && second {
		t.Fatalf("consults with the consent service down were answered: %s; %s", detail1, detail2)
	}
	if !first && second {
		t.Fatalf("refused, then answered again with the consent service still down: %s", detail2)
	}
	for i := 0; i < 3; i++ {
		if ok, detail := consultOK(); ok {
			t.Fatalf("consult %d with the consent service down answered: %s", i, detail)
		}
	}

	// Restarted with the printed command line, on its port and data.
	c := comps["consent"]
	restart := exec.Command(c.restartArgs[0], c.restartArgs[1:]...)
	restart.Env = cmd.Env
	restart.Stdout, restart.Stderr = io.Discard, io.Discard
	if err := restart.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = restart.Process.Kill(); _ = restart.Wait() })
	addr := strings.TrimPrefix(c.url, "https://")
	for i := 0; ; i++ {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			conn.Close()
			break
		}
		if i == 100 {
			t.Fatalf("restarted consent service does not listen on %s", addr)
		}
		time.Sleep(50 * time.Millisecond)
	}
	recovered := false
	for i := 0; i < 20 && !recovered; i++ {
		recovered, _ = consultOK()
		if !recovered {
			time.Sleep(100 * time.Millisecond)
		}
	}
	if !recovered {
		t.Fatal("consults still refused after the consent service came back")
	}
	for i := 0; i < 3; i++ {
		if ok, detail := consultOK(); !ok {
			t.Fatalf("consult %d after recovery: %s", i, detail)
		}
	}

	// The network process dies: its components go with it.
	var pids []int
	for name, c := range comps {
		if name != "consent" {
			pids = append(pids, c.pid)
		}
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	if !gone(pids...) {
		t.Fatalf("components outlived the killed network process: %v", pids)
	}
}

// TestPlateauOption: --plateau takes a plateau of the growth model or
// mixed; anything else is refused with what it takes.
func TestPlateauOption(t *testing.T) {
	for _, tc := range []struct {
		in      string
		plateau int
		mixed   bool
		err     bool
	}{
		{"", 0, false, false},
		{"1", 1, false, false},
		{"4", 4, false, false},
		{"mixed", 0, true, false},
		{"0", 0, false, true},
		{"5", 0, false, true},
		{"Mixed", 0, false, true},
		{"all", 0, false, true},
	} {
		var opts network.Options
		err := plateauOption(tc.in, &opts)
		if (err != nil) != tc.err || opts.Plateau != tc.plateau || opts.Mixed != tc.mixed {
			t.Errorf("--plateau %q: plateau %d, mixed %v, err %v", tc.in, opts.Plateau, opts.Mixed, err)
		}
		if err != nil && !strings.Contains(err.Error(), "mixed") {
			t.Errorf("--plateau %q: the error %q does not say mixed is an option", tc.in, err)
		}
	}
}

func TestCareOption(t *testing.T) {
	for _, tc := range []struct {
		care, pattern, want string
		err                 bool
	}{
		{"bgz", "", "notified-pull", false},
		{"bgz", "indexed-pull", "indexed-pull", false},
		{"bgz", "push", "", true},
		{"correspondentie", "", "push", false},
		{"correspondentie", "indexed-pull", "", true},
		{"geboortezorg", "", "push", false},
		{"geboortezorg", "notified-pull", "", true},
		{"bgz", "direct-pull", "", true}, // no demo exchange of its own
		{"beeld", "", "indexed-pull", false},
		{"beeld", "direct-pull", "", true},
		{"beeld", "push", "", true},
		{"bgz-r4", "", "notified-pull", false},
		{"bgz-r4", "indexed-pull", "", true},
		{"lab", "", "", true},
	} {
		got, err := careOption(node.DefaultApplications(), tc.care, tc.pattern)
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("--care %s --pattern %q: %q, err %v; want %q", tc.care, tc.pattern, got, err, tc.want)
		}
		if tc.care == "lab" && (err == nil || !strings.Contains(err.Error(), "bgz, bgz-r4, correspondentie")) {
			t.Errorf("--care lab: the error %v does not list the registered applications", err)
		}
	}
}

// --plateau 3, 4 or mixed consults under a proof of validation: refused
// for a care application with a Direct Pull but without a validation kit,
// with the reason. BgZ on STU3 and on R4 have their kits; without the R4
// one, bgz-r4 is refused.
func TestPlateauCare(t *testing.T) {
	var stu3Only, noBeeld []kits.Kit
	for _, k := range kits.Shipped() {
		if k.Application != "bgz-r4" {
			stu3Only = append(stu3Only, k)
		}
		if k.Application != "beeld" {
			noBeeld = append(noBeeld, k)
		}
	}
	for _, tc := range []struct {
		care string
		kits []kits.Kit
		opts network.Options
		err  bool
	}{
		{"bgz", kits.Shipped(), network.Options{Plateau: 4}, false},
		{"bgz-r4", kits.Shipped(), network.Options{}, false},
		{"bgz-r4", kits.Shipped(), network.Options{Plateau: 2}, false},
		{"bgz-r4", kits.Shipped(), network.Options{Plateau: 3}, false},
		{"bgz-r4", kits.Shipped(), network.Options{Plateau: 4}, false},
		{"bgz-r4", kits.Shipped(), network.Options{Mixed: true}, false},
		{"bgz-r4", stu3Only, network.Options{Plateau: 2}, false},
		{"bgz-r4", stu3Only, network.Options{Plateau: 3}, true},
		{"bgz-r4", stu3Only, network.Options{Mixed: true}, true},
		{"beeld", noBeeld, network.Options{Plateau: 3}, true},                   // Direct Pull, no kit
		{"beeld", kits.Shipped(), network.Options{Plateau: 3}, false},           // its kit
		{"correspondentie", kits.Shipped(), network.Options{Plateau: 3}, false}, // Push: no consult
		{"correspondentie", kits.Shipped(), network.Options{Mixed: true}, false},
	} {
		err := plateauCare(node.DefaultApplications(), tc.kits, tc.care, tc.opts)
		if (err != nil) != tc.err || err != nil && !strings.Contains(err.Error(), "no validation kit") {
			t.Errorf("--care %s (%d kits) %+v: %v", tc.care, len(tc.kits), tc.opts, err)
		}
	}
}

// TestNetworkUpProcessesRuns: with every component in a process of its own
// the runs of one process pass as well: the Indexed Pull across three
// holders (the nursing home's node a third process, the clinic on the
// hospital's), Beeldbeschikbaarheid with the PACS stand-in as `pacs
// serve`, and the growth-model run at plateau 4 (the identity issuer
// and the central log as processes, the hospital's node validated into the
// admission register the addressbook process serves). Every component is
// gone once the run exits.
func TestNetworkUpProcessesRuns(t *testing.T) {
	if testing.Short() {
		t.Skip("starts networks of processes")
	}
	for _, tc := range []struct {
		name       string
		args       []string
		components []string // besides the default network's
		want       []string
	}{
		{"indexed-pull", []string{"--pattern", "indexed-pull"}, []string{"nursinghome-node", "identity-issuer", "monitor"},
			[]string{"Indexed Pull answer: searchset", "Verpleeghuis De Berken         delivered"}},
		{"beeld", []string{"--care", "beeld"}, []string{"pacs"},
			[]string{"the referral index names as holders of images: 90000002", "the received SOP instance UIDs: all of the study's"}},
		{"plateau-4", []string{"--plateau", "4"}, []string{"identity-issuer", "logcentral"},
			[]string{"proof recorded in the admission register", "user identity signed by the identity issuer",
				"the central log holds both nodes' chains"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"network", "up", "--processes", "--once", "--data-dir", t.TempDir(), "--log-level", "warn"}, tc.args...)
			cmd := exec.Command(os.Args[0], args...)
			cmd.Env = append(os.Environ(), runMainEnv+"=1")
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &out
			if err := cmd.Run(); err != nil {
				t.Fatalf("network up --processes %s: %v\n%s", strings.Join(tc.args, " "), err, out.String())
			}
			for _, want := range tc.want {
				if !strings.Contains(out.String(), want) {
					t.Fatalf("no %q in:\n%s", want, out.String())
				}
			}
			comps := parseProcesses(t, out.String())
			var pids []int
			for _, name := range tc.components {
				if comps[name] == nil {
					t.Fatalf("no process %s in:\n%s", name, out.String())
				}
			}
			for _, c := range comps {
				pids = append(pids, c.pid)
			}
			if !gone(pids...) {
				t.Fatalf("components still running after network up --once exited: %v", pids)
			}
		})
	}
}
