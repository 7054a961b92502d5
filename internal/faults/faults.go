// Package faults lets the module's own tests break a node on purpose, to
// prove that the validation kit catches each way a GtK can be wrong. A Set
// reaches the node only through node.Options (and network.Options in
// tests): there is no configuration key, flag or environment variable for
// it, and code outside this module cannot import this package.
//
// Every check is Has on a nil-safe *Set: a production node has none, and
// each guarded line costs one nil comparison.
package faults

import (
	"slices"
	"sync"
)

// Fault is one deliberate defect.
type Fault string

// The defects a node can be started with. Each names what a conformant GtK
// must do and this one does not.
const (
	// TLS12 lets the public port negotiate TLS 1.2.
	TLS12 Fault = "tls-1.2-allowed"
	// NoClientCertificate lets a client connect without a certificate.
	NoClientCertificate Fault = "no-client-certificate-required"
	// AssertionAlgNone accepts an unsigned client assertion (alg none).
	AssertionAlgNone Fault = "assertion-alg-none-accepted"
	// AssertionHMAC accepts a client assertion signed HS256 with the
	// client's public JWK as secret (algorithm confusion).
	AssertionHMAC Fault = "assertion-hmac-accepted"
	// NoReplayCheck forgets assertion IDs: a replayed jti gets a token.
	NoReplayCheck Fault = "assertion-replay-not-checked"
	// NoAudienceCheck accepts an assertion for any audience.
	NoAudienceCheck Fault = "assertion-audience-not-checked"
	// NoExpiryCheck accepts an expired assertion.
	NoExpiryCheck Fault = "assertion-expiry-not-checked"
	// UnboundToken accepts an access token over any client certificate
	// (RFC 8705 binding not checked).
	UnboundToken Fault = "token-not-bound-to-certificate"
	// PullWithoutAuthorizationBase makes the receiver ask for its data
	// token without the notification's authorization base.
	PullWithoutAuthorizationBase Fault = "pull-without-authorization-base"
	// NotificationBSNUnchecked accepts a notification whose BSN fails the
	// 11-proef.
	NotificationBSNUnchecked Fault = "notification-bsn-not-checked"
	// AuditedAfterAnswer answers a data exchange (Notified Pull, Direct
	// Pull) before its audit record is written: the records are held until
	// the node stops.
	AuditedAfterAnswer Fault = "audited-after-answer"
	// PushReceiptWrongHash makes a Push receiver sign its receipts over
	// the hash of the payload entry instead of the message bytes received.
	PushReceiptWrongHash Fault = "push-receipt-wrong-hash"
	// PushRepeatNewReceipt makes a Push receiver answer a repeated message
	// id with a new receipt instead of the one it gave the first time.
	PushRepeatNewReceipt Fault = "push-repeat-new-receipt"
	// PushReceiptNotVerified makes a Push sender take any receipt as proof
	// of delivery without checking it.
	PushReceiptNotVerified Fault = "push-receipt-not-verified"
	// DataOnTaskBase serves the data of a care application of another
	// FHIR version than STU3 (BgZ on R4) on the STU3 base its Notified
	// Pull Tasks are on, instead of refusing it there.
	DataOnTaskBase Fault = "data-on-stu3-task-base"
	// ImagingOtherPatientPassed makes an imaging requester hand its system
	// the DICOM instances of a retrieval that are of another patient than
	// the one it asked for.
	ImagingOtherPatientPassed Fault = "imaging-other-patient-passed-on"
)

// All lists every fault.
var All = []Fault{TLS12, NoClientCertificate, AssertionAlgNone, AssertionHMAC, NoReplayCheck, NoAudienceCheck,
	NoExpiryCheck, UnboundToken, PullWithoutAuthorizationBase, NotificationBSNUnchecked, AuditedAfterAnswer,
	PushReceiptWrongHash, PushRepeatNewReceipt, PushReceiptNotVerified, DataOnTaskBase, ImagingOtherPatientPassed}

// Set is the faults a node has now. Tests switch them between runs against
// one running node; a nil *Set has none.
type Set struct {
	mu sync.RWMutex
	on []Fault
}

// New returns a set with faults on.
func New(on ...Fault) *Set { return &Set{on: slices.Clone(on)} }

// Has reports whether f is on.
func (s *Set) Has(f Fault) bool {
	if s == nil {
		return false
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	return slices.Contains(s.on, f)
}

// Any reports whether any fault is on.
func (s *Set) Any() bool {
	if s == nil {
		return false
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.on) > 0
}

// Switch replaces the faults that are on.
func (s *Set) Switch(on ...Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.on = slices.Clone(on)
}
