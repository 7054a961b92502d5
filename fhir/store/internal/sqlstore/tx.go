package sqlstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/schakel-nl/schakel/fhir/store"
)

// errTxDone is returned by a Tx used after its InTx returned.
var errTxDone = errors.New("transaction already finished")

// TxView is the store.Tx of a backend's InTx: the operations of one tenant
// on one open transaction. Each write runs inside a savepoint, so a write
// that fails halfway leaves nothing behind even when fn goes on and commits,
// and (on PostgreSQL) a failed statement does not poison the transaction.
type TxView struct {
	e      *Engine
	c      Conn
	tenant string
	done   bool
}

var _ store.Tx = (*TxView)(nil)

// NewTxView returns the Tx of tenant on transaction c.
func NewTxView(e *Engine, c Conn, tenant string) *TxView {
	return &TxView{e: e, c: c, tenant: tenant}
}

// Finish makes every later use of the view fail (InTx has returned).
func (t *TxView) Finish() { t.done = true }

// atomic runs op inside a savepoint.
func (t *TxView) atomic(ctx context.Context, op func() error) error {
	if t.done {
		return errTxDone
	}
	if err := t.c.Exec(ctx, `SAVEPOINT op`); err != nil {
		return t.e.wrap(err)
	}
	if err := op(); err != nil {
		if rerr := t.c.Exec(ctx, `ROLLBACK TO SAVEPOINT op`); rerr != nil {
			return errors.Join(err, fmt.Errorf("%s: rollback to savepoint: %w", t.e.Dialect.Name, rerr))
		}
		// RELEASE after ROLLBACK TO removes the savepoint itself.
		if rerr := t.c.Exec(ctx, `RELEASE SAVEPOINT op`); rerr != nil {
			return errors.Join(err, t.e.wrap(rerr))
		}
		return err
	}
	return t.e.wrap(t.c.Exec(ctx, `RELEASE SAVEPOINT op`))
}

// Create stores a new resource under a fresh id.
func (t *TxView) Create(ctx context.Context, body json.RawMessage) (res store.Resource, err error) {
	p, err := t.e.ParseCreate(body)
	if err != nil {
		return res, err
	}
	err = t.atomic(ctx, func() error {
		res, _, err = t.e.Write(ctx, t.c, t.tenant, p, "")
		return err
	})
	return res, err
}

// Update stores a new version of the resource with the id in body.
func (t *TxView) Update(ctx context.Context, body json.RawMessage, ifMatch string) (res store.Resource, created bool, err error) {
	p, err := t.e.ParseUpdate(body)
	if err != nil {
		return res, false, err
	}
	err = t.atomic(ctx, func() error {
		res, created, err = t.e.Write(ctx, t.c, t.tenant, p, ifMatch)
		return err
	})
	return res, created, err
}

// Delete marks the resource deleted.
func (t *TxView) Delete(ctx context.Context, typ, id string) error {
	return t.atomic(ctx, func() error { return t.e.Delete(ctx, t.c, t.tenant, typ, id) })
}

// Read returns the current version, as written in this transaction.
func (t *TxView) Read(ctx context.Context, typ, id string) (store.Resource, error) {
	if t.done {
		return store.Resource{}, errTxDone
	}
	return t.e.Read(ctx, t.c, t.tenant, typ, id)
}

// Search searches the tenant's resources as written in this transaction.
func (t *TxView) Search(ctx context.Context, q store.Query) (store.Page, error) {
	if t.done {
		return store.Page{}, errTxDone
	}
	return t.e.Search(ctx, t.c, t.tenant, q)
}
