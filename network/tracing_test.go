package network

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/schakel-nl/schakel/node"
	"github.com/schakel-nl/schakel/plateau"
)

// TestOneTraceSpansBothNodes runs one exchange with each node's spans in an
// in-memory exporter: the GP's referral request starts the trace, the
// notification carries it to the hospital, and the hospital's pull — run
// later, on a worker — continues it, so that the token, store, audit and
// FHIR spans of both nodes are one trace. No BSN is in any span.
func TestOneTraceSpansBothNodes(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	ctx, cancel := context.WithCancel(context.Background())
	nw, err := Up(ctx, Options{DataDir: t.TempDir(), Patients: 1,
		Agreements: []plateau.PartnerConfig{{URA: peerURA, Name: "Testpraktijk", Plateaus: plateau.Uniform(1)}},
		Tracing: func(name string) trace.TracerProvider {
			return sdktrace.NewTracerProvider(sdktrace.WithSyncer(node.RedactSpans(exp)),
				sdktrace.WithResource(resource.NewSchemaless(nodeAttr.String(name))))
		}})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	nw.Start(ctx)
	_, exchangeErr := nw.Exchange(ctx)
	patients := nw.Patients
	// Stopped before the spans are read: the pull's own span ends after
	// the referral is seen completed, and Wait waits for the pull workers.
	cancel()
	if err := nw.Wait(); err != nil {
		t.Errorf("network stopped with: %v", err)
	}
	if exchangeErr != nil {
		t.Fatal(exchangeErr)
	}
	spans := exp.GetSpans()

	// The trace of the hospital's pull.
	var tid trace.TraceID
	for _, s := range spans {
		if s.Name == "notifiedpull.pull" && nodeOf(s) == "hospital-node" {
			tid = s.SpanContext.TraceID()
		}
	}
	if !tid.IsValid() {
		t.Fatalf("no notifiedpull.pull span on the hospital's node among %d spans", len(spans))
	}
	have := map[string]bool{} // "node span-name"
	var roots []string
	for _, s := range spans {
		if s.SpanContext.TraceID() != tid {
			continue
		}
		have[nodeOf(s)+" "+s.Name] = true
		if !s.Parent.IsValid() {
			roots = append(roots, nodeOf(s)+" "+s.Name)
		}
	}
	if len(roots) != 1 || !strings.HasPrefix(roots[0], "gp-node internal POST /internal/referrals") {
		t.Errorf("trace roots = %q, want the GP's referral request alone", roots)
	}
	for _, want := range []string{
		"hospital-node public /fhir/stu3/{ura}/{path...}", // the notification, and the GP's pulled FHIR reads
		"hospital-node notifiedpull.pull",
		"hospital-node oauth.token.request",
		"hospital-node fhir GET",
		"hospital-node audit.append",
		"hospital-node store.create",
		"gp-node oauth.token.issue",
		"gp-node public POST /oauth2/token",
		"gp-node public /fhir/stu3/{ura}/{path...}",
		"gp-node store.search",
		"gp-node audit.append",
	} {
		if !have[want] {
			t.Errorf("the exchange's trace has no %q span", want)
		}
	}
	if have["gp-node notifiedpull.pull"] {
		t.Error("the GP's node pulled in the exchange's trace")
	}
	if t.Failed() {
		var names []string
		for k := range have {
			names = append(names, k)
		}
		t.Logf("spans in the trace: %q", names)
	}
	for _, s := range spans {
		text := s.Name + fmt.Sprint(s.Attributes)
		for _, p := range patients {
			if strings.Contains(text, p.BSN) {
				t.Errorf("span %s carries the BSN of %s: %v", s.Name, p.Name, s.Attributes)
			}
		}
	}
}

var nodeAttr = attribute.Key("schakel.test.node")

func nodeOf(s tracetest.SpanStub) string {
	for _, kv := range s.Resource.Attributes() {
		if kv.Key == nodeAttr {
			return kv.Value.AsString()
		}
	}
	return ""
}
