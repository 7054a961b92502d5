package node

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/schakel-nl/schakel/audit"
	"github.com/schakel-nl/schakel/fhir/store"
	"github.com/schakel-nl/schakel/internal/pgdb"
	"github.com/schakel-nl/schakel/oauth"
)

// storeUnavailable reports whether err means one of the node's stores (the
// audit log among them) could not be reached (PostgreSQL restarting, a dropped connection): the
// request failed as a whole and may be tried again, so it is answered 503.
func storeUnavailable(err error) bool {
	return errors.Is(err, store.ErrUnavailable) || errors.Is(err, audit.ErrUnavailable) || pgdb.Unavailable(err)
}

// writeStoreUnavailable is the internal API's 503 for a store outage.
func writeStoreUnavailable(w http.ResponseWriter) {
	w.Header().Set("Retry-After", "1")
	writeProblem(w, http.StatusServiceUnavailable, "store-unavailable", "the node's store is unavailable; nothing was done, try again later")
}

// grantStoreUnavailable turns a store outage met while resolving a grant
// into RFC 6749's temporarily_unavailable (503), instead of server_error.
func grantStoreUnavailable(err error) error {
	if err == nil || errors.Is(err, oauth.ErrTemporarilyUnavailable) || !storeUnavailable(err) {
		return err
	}
	return fmt.Errorf("%w: %w", oauth.ErrTemporarilyUnavailable, err)
}
