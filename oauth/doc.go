// Package oauth is the node's OAuth2 authorization server and client, as the
// Twiin technical agreements (TTA FHIR Authentication & Authorization) use
// them between GtKs: mTLS (TLS 1.3) plus OAuth2 without shared secrets.
//
// The client id of an organisation is its URA. A client authenticates with a
// JWT client assertion signed by a key from its addressbook entry (not its TLS
// key), over a TLS connection whose client certificate carries the same URA.
// Access tokens are JWTs signed by the node, bound to that certificate.
//
// In the Notified Pull exchange (a) a sending node obtains a token from the
// receiving node to create the notification Task (client_credentials), and
// (b) the receiving node obtains a token from the sending node to read the
// data, presenting the authorization_base it received in the notification
// (client_credentials or jwt-bearer; the GrantResolver decides).
//
// # Standards mapping
//
//	RFC 6749 §3.2     POST /oauth2/token, form-encoded, JSON, Cache-Control: no-store (readForm, writeJSON)
//	RFC 6749 §3.3     scope syntax (parseScope)
//	RFC 6749 §4.4     grant_type=client_credentials
//	RFC 6749 §5.1/5.2 token and error responses; all errors pass through Server.writeError
//	RFC 7523 §2.1     grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer + assertion
//	RFC 7523 §2.2     client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer + client_assertion
//	RFC 7523 §3       assertion checks: iss, sub, aud, exp, iat, jti and replay (Server.verifyAssertion, ReplayCache)
//	RFC 7662          POST /oauth2/introspect, callers authenticated by mTLS
//	RFC 8414          GET /.well-known/oauth-authorization-server (Metadata, Client.Metadata)
//	RFC 7517 §5       GET /.well-known/jwks.json, current and previous signing keys
//	RFC 9068          access token format: typ at+jwt, iss, sub, aud, exp, iat, jti, client_id, scope
//	RFC 8705 §3       certificate-bound tokens: cnf.x5t#S256, checked by Server.Verify
//	RFC 6750 §2.1/3.1 Authorization: Bearer and the WWW-Authenticate challenge (WriteBearerError)
//
// Twiin-specific: the token request parameter authorization_base (the secret
// of a Notified Pull notification Task) is passed to the GrantResolver. The
// agreement's exact parameter names are not public; the standard RFC 7523
// names above are used. Signature algorithms accepted: PS256, ES256, ES384,
// ES512, RS256; never none or HMAC. The grant assertion's iss must be the
// client itself. From plateau 4 it carries the user's identity token, signed
// by a configured identity issuer (Dezi-style), as the claim user_identity;
// its verified content reaches the GrantResolver as GrantRequest.User (see
// identity.go and docs/security.md for the claim mapping). Server.Rotate
// replaces the signing key without downtime.
package oauth
