// Package oprf is the oblivious pseudorandom function the referral index uses
// to turn a BSN into a pseudonym without ever seeing the BSN: 2HashDH over
// NIST P-256, computed with x-coordinates only.
//
// The requester maps its input to a curve point P = H(input), blinds it with a
// random scalar r and sends x(r·P). The evaluator, which holds the secret
// scalar k, returns x(k·r·P). The requester removes r and gets x(k·P), the
// pseudonym. The evaluator sees only a uniformly random point; the requester
// cannot compute pseudonyms without the evaluator.
//
// Working with x-coordinates is sound because scalar multiplication commutes
// with negation: x(s·P) = x(s·(−P)). That lets crypto/ecdh, whose ECDH returns
// x(s·Q) in constant time, do every multiplication; the standard library has
// no other P-256 point arithmetic.
package oprf

import (
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
)

// ElementSize is the length of every element on the wire: a big-endian
// x-coordinate on P-256.
const ElementSize = 32

// ErrInvalidElement: the bytes are not the x-coordinate of a P-256 point.
var ErrInvalidElement = errors.New("oprf: not a valid P-256 element")

var (
	curve  = ecdh.P256()
	params = elliptic.P256().Params()
	// sqrtExp is (p+1)/4: p ≡ 3 (mod 4), so a^((p+1)/4) is a square root of a
	// quadratic residue a.
	sqrtExp = new(big.Int).Rsh(new(big.Int).Add(params.P, big.NewInt(1)), 2)
	three   = big.NewInt(3)
)

// Key is the evaluator's secret. Its ID is derived from the public key, so a
// new key always gets a new ID and pseudonyms name the key they were made
// under.
type Key struct {
	priv *ecdh.PrivateKey
	k    *big.Int
	id   string
}

// GenerateKey returns a new random key.
func GenerateKey() (*Key, error) {
	priv, err := curve.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("oprf: generate key: %w", err)
	}
	return newKey(priv), nil
}

func newKey(priv *ecdh.PrivateKey) *Key {
	sum := sha256.Sum256(priv.PublicKey().Bytes())
	return &Key{
		priv: priv,
		k:    new(big.Int).SetBytes(priv.Bytes()),
		id:   base64.RawURLEncoding.EncodeToString(sum[:9]),
	}
}

// ID names the key: 12 base64url characters of the public key's SHA-256.
func (k *Key) ID() string { return k.id }

// MarshalPEM encodes the key as a PKCS#8 "PRIVATE KEY" PEM block.
func (k *Key) MarshalPEM() ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k.priv)
	if err != nil {
		return nil, fmt.Errorf("oprf: encode key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// ParseKeyPEM reads a key written by MarshalPEM (or any PKCS#8 / SEC 1 P-256
// private key).
func ParseKeyPEM(data []byte) (*Key, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("oprf: no PEM block in key data")
	}
	var parsed any
	var err error
	switch block.Type {
	case "PRIVATE KEY":
		parsed, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		parsed, err = x509.ParseECPrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("oprf: unexpected PEM block %q", block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("oprf: parse key: %w", err)
	}
	var priv *ecdh.PrivateKey
	switch key := parsed.(type) {
	case *ecdsa.PrivateKey:
		priv, err = key.ECDH()
	case *ecdh.PrivateKey:
		priv = key
	default:
		return nil, fmt.Errorf("oprf: key type %T is not P-256", parsed)
	}
	if err != nil {
		return nil, fmt.Errorf("oprf: parse key: %w", err)
	}
	if priv.Curve() != curve {
		return nil, errors.New("oprf: key is not on P-256")
	}
	return newKey(priv), nil
}

// Evaluate is the evaluator's step: x(k·B) for the blinded element x(B).
// Constant time in k.
func (k *Key) Evaluate(blinded []byte) ([]byte, error) {
	return mul(k.priv, blinded)
}

// Rekey moves a finished output of old to this key: x(k·old⁻¹·Q). The
// evaluator can rotate its key and migrate every stored pseudonym without
// learning or needing the inputs.
func (k *Key) Rekey(old *Key, output []byte) ([]byte, error) {
	inv := new(big.Int).ModInverse(old.k, params.N)
	s := new(big.Int).Mul(k.k, inv)
	priv, err := scalarKey(s.Mod(s, params.N))
	if err != nil {
		return nil, err
	}
	return mul(priv, output)
}

// Blinded is the requester's state between Blind and Finalize. It holds the
// blinding scalar: keep it private and use it once.
type Blinded struct {
	// Element is x(r·H(input)), to send to the evaluator.
	Element []byte
	rInv    *ecdh.PrivateKey
}

// Blind maps input to the curve under domain (which separates uses of one
// key) and blinds it with a fresh random scalar.
func Blind(domain string, input []byte) (*Blinded, error) {
	p, err := hashToCurve(domain, input)
	if err != nil {
		return nil, err
	}
	r, err := curve.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("oprf: blinding scalar: %w", err)
	}
	element, err := r.ECDH(p)
	if err != nil {
		return nil, fmt.Errorf("oprf: blind: %w", err)
	}
	rInv, err := scalarKey(new(big.Int).ModInverse(new(big.Int).SetBytes(r.Bytes()), params.N))
	if err != nil {
		return nil, err
	}
	return &Blinded{Element: element, rInv: rInv}, nil
}

// Finalize removes the blinding from the evaluator's answer x(k·r·P) and
// returns the output x(k·P).
func (b *Blinded) Finalize(evaluated []byte) ([]byte, error) {
	return mul(b.rInv, evaluated)
}

// hashToCurve maps input to a P-256 point by try-and-increment: hash to a
// candidate x until x³−3x+b is a square. The loop count depends on the input,
// which only the requester (who knows the input) can time.
func hashToCurve(domain string, input []byte) (*ecdh.PublicKey, error) {
	var prefix [8]byte
	binary.BigEndian.PutUint32(prefix[:4], uint32(len(domain)))
	binary.BigEndian.PutUint32(prefix[4:], uint32(len(input)))
	for ctr := 0; ctr < 256; ctr++ {
		h := sha256.New()
		h.Write([]byte("schakel-oprf-p256-h2c"))
		h.Write(prefix[:])
		h.Write([]byte(domain))
		h.Write(input)
		h.Write([]byte{byte(ctr)})
		x := new(big.Int).SetBytes(h.Sum(nil))
		if x.Cmp(params.P) >= 0 {
			continue
		}
		if pub, err := liftX(x); err == nil {
			return pub, nil
		}
	}
	// Each try succeeds with probability 1/2: 2^-256 is not reached.
	return nil, errors.New("oprf: hash to curve failed")
}

// liftX returns a point with x-coordinate x (the one with even y).
func liftX(x *big.Int) (*ecdh.PublicKey, error) {
	p := params.P
	rhs := new(big.Int).Exp(x, three, p)
	rhs.Sub(rhs, new(big.Int).Mul(three, x))
	rhs.Add(rhs, params.B)
	rhs.Mod(rhs, p)
	y := new(big.Int).Exp(rhs, sqrtExp, p)
	if new(big.Int).Exp(y, big.NewInt(2), p).Cmp(rhs) != 0 {
		return nil, ErrInvalidElement
	}
	if y.Bit(0) == 1 {
		y.Sub(p, y)
	}
	buf := make([]byte, 1+2*ElementSize)
	buf[0] = 4
	x.FillBytes(buf[1 : 1+ElementSize])
	y.FillBytes(buf[1+ElementSize:])
	pub, err := curve.NewPublicKey(buf)
	if err != nil {
		return nil, ErrInvalidElement
	}
	return pub, nil
}

// mul returns x(s·Q) for the element x(Q).
func mul(s *ecdh.PrivateKey, element []byte) ([]byte, error) {
	if len(element) != ElementSize {
		return nil, fmt.Errorf("%w: %d bytes, want %d", ErrInvalidElement, len(element), ElementSize)
	}
	x := new(big.Int).SetBytes(element)
	if x.Cmp(params.P) >= 0 {
		return nil, ErrInvalidElement
	}
	q, err := liftX(x)
	if err != nil {
		return nil, err
	}
	out, err := s.ECDH(q)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidElement, err)
	}
	return out, nil
}

// scalarKey wraps a scalar in [1, n-1] as an ecdh private key.
func scalarKey(s *big.Int) (*ecdh.PrivateKey, error) {
	if s.Sign() == 0 {
		return nil, errors.New("oprf: zero scalar")
	}
	buf := make([]byte, ElementSize)
	s.FillBytes(buf)
	return curve.NewPrivateKey(buf)
}
