// Package security holds the node's attack catalogue: one table-driven test
// (attacks_test.go) that sends every known attack on the trust layer —
// TLS handshake, client and grant assertions, user identity tokens, access
// tokens and malformed requests — to a real mTLS listener with the
// authorization server, and checks the answer, that nothing was issued or
// stored, and that no internals leaked. docs/security.md lists the same
// cases; a test keeps the two in sync.
package security
