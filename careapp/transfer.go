package careapp

import "encoding/json"

// Transfer is a Notified Pull application whose workflow Task is a request
// the receiver accepts or rejects before it takes the rest (eOverdracht's
// nursing transfer): its read inputs are documents read with an instance
// operation, some of them are read before the receiver decides, and the
// receiver moves the workflow Task through the statuses the agreement
// allows.
//
// The patterns never switch on an application's name: notifiedpull asks
// an application whether it is a Transfer, and follows what it answers.
type Transfer interface {
	Workflow
	// DocumentOperation is the instance operation a receiver reads a read
	// input of this resource type with, e.g. "$document" for a
	// Composition; "" for a plain read.
	DocumentOperation(resourceType string) string
	// BeforeAcceptance reports whether the receiver reads the workflow
	// Task input with this type before it accepts the request (e.g. the
	// aanmeldbericht, on which the receiver decides).
	BeforeAcceptance(input Coding) bool
	// ReceiverTransitions are the workflow Task statuses a receiver may
	// set, by the status the Task has.
	ReceiverTransitions() map[string][]string
	// ReadInput is the type of the workflow Task input that makes this
	// resource of the sender's record available to the receiver; an error
	// (a *fhir.Error with the status to answer) when it cannot be one, e.g.
	// a Composition of another profile or FHIR version.
	ReadInput(resource json.RawMessage) (Coding, error)
	// Decide is the receiving node's check of a document read before
	// acceptance (its DocumentOperation's answer) for the referral's
	// patient: nil accepts the request (for a Decision, passes it on to
	// the participant's decision), an error rejects it with the error's
	// text as the reason (e.g. a document about another patient).
	Decide(document json.RawMessage, patientBSN string) error
}

// Decision is a Transfer whose requests the receiving organisation decides
// on itself (eOverdracht: the receiving nurse accepts or rejects the
// aanmeldbericht): the receiving node reads the inputs BeforeAcceptance
// marks, runs the application's Decide as its own safety check, and then
// waits for the participant's system to accept or reject the request
// through the node's internal API, instead of accepting on its own.
type Decision interface {
	Transfer
	// AwaitsDecision reports whether a received request waits for the
	// receiving participant's system to decide.
	AwaitsDecision() bool
}
