package node

import (
	"context"
	"log/slog"

	"go.opentelemetry.io/otel/trace"
)

// addTraceAttrs puts the trace and span of ctx, when it is sampled, into a
// log record: the line then leads to the trace, and the trace to the line.
func addTraceAttrs(ctx context.Context, r *slog.Record) {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() {
		return
	}
	r.AddAttrs(slog.String("trace_id", sc.TraceID().String()), slog.String("span_id", sc.SpanID().String()))
}
