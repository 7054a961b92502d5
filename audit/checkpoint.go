package audit

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"
)

// CheckpointType is the typ header and the "typ" claim of a checkpoint JWS.
const CheckpointType = "schakel-audit-checkpoint+jwt"

// checkpointClaims is the payload of a checkpoint: the chain head after
// record Seq, signed so that rewriting the chain up to Seq is detectable.
type checkpointClaims struct {
	Typ  string `json:"typ"`
	Node string `json:"node"`
	Seq  int64  `json:"seq"`
	Head string `json:"head"` // hex SHA-256 chain hash of record Seq
	IAT  int64  `json:"iat"`
}

// Checkpoint is one stored, signed anchor of the chain.
type Checkpoint struct {
	Seq  int64
	Head []byte
	Time time.Time
	JWS  string
}

func checkpointSigner(key jwk.Key) (func(checkpointClaims) (string, error), error) {
	a, ok := key.Algorithm()
	if !ok {
		return nil, errors.New("checkpoint key has no alg")
	}
	alg, ok := jwa.LookupSignatureAlgorithm(a.String())
	if !ok || alg == jwa.NoSignature() || alg.IsSymmetric() {
		return nil, fmt.Errorf("checkpoint key alg %s cannot sign checkpoints", a)
	}
	kid, _ := key.KeyID()
	hdr := jws.NewHeaders()
	if err := hdr.Set(jws.TypeKey, CheckpointType); err != nil {
		return nil, err
	}
	if err := hdr.Set(jws.KeyIDKey, kid); err != nil {
		return nil, err
	}
	return func(c checkpointClaims) (string, error) {
		c.Typ = CheckpointType
		payload, err := json.Marshal(c)
		if err != nil {
			return "", err
		}
		out, err := jws.Sign(payload, jws.WithKey(alg, key, jws.WithProtectedHeaders(hdr)))
		if err != nil {
			return "", fmt.Errorf("sign checkpoint: %w", err)
		}
		return string(out), nil
	}, nil
}

// parseCheckpoint returns the claims of a checkpoint JWS, checking its
// signature against keys when keys is not nil.
func parseCheckpoint(compact string, keys jwk.Set) (checkpointClaims, error) {
	var payload []byte
	var err error
	if keys != nil {
		payload, err = jws.Verify([]byte(compact), jws.WithKeySet(keys, jws.WithInferAlgorithmFromKey(true)))
		if err != nil {
			return checkpointClaims{}, fmt.Errorf("signature does not verify with the given keys: %w", err)
		}
	} else {
		msg, err := jws.Parse([]byte(compact))
		if err != nil {
			return checkpointClaims{}, fmt.Errorf("not a JWS: %w", err)
		}
		payload = msg.Payload()
	}
	var c checkpointClaims
	if err := json.Unmarshal(payload, &c); err != nil || c.Typ != CheckpointType {
		return checkpointClaims{}, errors.New("payload is not a Schakel audit checkpoint")
	}
	if _, err := hex.DecodeString(c.Head); err != nil || len(c.Head) != 64 {
		return checkpointClaims{}, errors.New("checkpoint head is not a SHA-256 hash")
	}
	return c, nil
}
