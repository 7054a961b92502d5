package oprf

import (
	"bytes"
	"errors"
	"math/big"
	"testing"
)

// direct computes x(k·H(input)) the way only the key holder can: the value a
// blinded round trip must reproduce.
func direct(t testing.TB, k *Key, domain string, input []byte) []byte {
	t.Helper()
	p, err := hashToCurve(domain, input)
	if err != nil {
		t.Fatal(err)
	}
	out, err := k.priv.ECDH(p)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func roundTrip(t testing.TB, k *Key, domain string, input []byte) []byte {
	t.Helper()
	b, err := Blind(domain, input)
	if err != nil {
		t.Fatal(err)
	}
	ev, err := k.Evaluate(b.Element)
	if err != nil {
		t.Fatal(err)
	}
	out, err := b.Finalize(ev)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func mustKey(t testing.TB) *Key {
	t.Helper()
	k, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestRoundTripMatchesDirectEvaluation(t *testing.T) {
	k := mustKey(t)
	for _, in := range []string{"bsn:999911120", "bsn:999911132", "", "x"} {
		want := direct(t, k, "d", []byte(in))
		for i := 0; i < 3; i++ { // fresh blinding every time, same output
			if got := roundTrip(t, k, "d", []byte(in)); !bytes.Equal(got, want) {
				t.Fatalf("input %q try %d: round trip %x, direct %x", in, i, got, want)
			}
		}
	}
}

func TestBlindingHidesInput(t *testing.T) {
	a, err := Blind("d", []byte("bsn:999911120"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := Blind("d", []byte("bsn:999911120"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(a.Element, b.Element) {
		t.Fatal("two blindings of one input are equal: the evaluator could link them")
	}
}

func TestOutputsSeparate(t *testing.T) {
	k1, k2 := mustKey(t), mustKey(t)
	base := direct(t, k1, "d", []byte("bsn:999911120"))
	for name, other := range map[string][]byte{
		"other input":  direct(t, k1, "d", []byte("bsn:999911132")),
		"other domain": direct(t, k1, "e", []byte("bsn:999911120")),
		"other key":    direct(t, k2, "d", []byte("bsn:999911120")),
		// length-prefixing keeps domain/input boundaries apart
		"shifted boundary": direct(t, k1, "dbsn", []byte(":999911120")),
	} {
		if bytes.Equal(base, other) {
			t.Errorf("%s gives the same output", name)
		}
	}
	if k1.ID() == k2.ID() {
		t.Error("two keys share an ID")
	}
}

func TestRekey(t *testing.T) {
	old, next := mustKey(t), mustKey(t)
	in := []byte("bsn:999911120")
	moved, err := next.Rekey(old, direct(t, old, "d", in))
	if err != nil {
		t.Fatal(err)
	}
	if want := roundTrip(t, next, "d", in); !bytes.Equal(moved, want) {
		t.Fatalf("rekeyed %x, new key gives %x", moved, want)
	}
}

func TestPEMRoundTrip(t *testing.T) {
	k := mustKey(t)
	data, err := k.MarshalPEM()
	if err != nil {
		t.Fatal(err)
	}
	back, err := ParseKeyPEM(data)
	if err != nil {
		t.Fatal(err)
	}
	if back.ID() != k.ID() {
		t.Fatalf("ID %s after round trip, want %s", back.ID(), k.ID())
	}
	in := []byte("bsn:999911120")
	if !bytes.Equal(direct(t, back, "d", in), direct(t, k, "d", in)) {
		t.Fatal("parsed key evaluates differently")
	}
	for name, bad := range map[string][]byte{
		"empty":     nil,
		"not PEM":   []byte("hello"),
		"cert type": []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"),
		"garbage":   []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"),
	} {
		if _, err := ParseKeyPEM(bad); err == nil {
			t.Errorf("%s: parsed", name)
		}
	}
}

func TestEvaluateRejectsInvalidElements(t *testing.T) {
	k := mustKey(t)
	p := params.P.FillBytes(make([]byte, 32))
	// Find an x that is not on the curve.
	var offCurve []byte
	for i := int64(1); ; i++ {
		if _, err := liftX(big.NewInt(i)); err != nil {
			offCurve = big.NewInt(i).FillBytes(make([]byte, 32))
			break
		}
	}
	for name, el := range map[string][]byte{
		"empty":     nil,
		"short":     make([]byte, 31),
		"long":      make([]byte, 33),
		"x = p":     p,
		"all ones":  bytes.Repeat([]byte{0xff}, 32),
		"off curve": offCurve,
	} {
		if _, err := k.Evaluate(el); !errors.Is(err, ErrInvalidElement) {
			t.Errorf("%s: err = %v, want ErrInvalidElement", name, err)
		}
	}
}

func BenchmarkEvaluate(b *testing.B) {
	k := mustKey(b)
	bl, err := Blind("d", []byte("bsn:999911120"))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := k.Evaluate(bl.Element); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkBlindFinalize(b *testing.B) {
	k := mustKey(b)
	bl, err := Blind("d", []byte("bsn:999911120"))
	if err != nil {
		b.Fatal(err)
	}
	ev, err := k.Evaluate(bl.Element)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		bl, err := Blind("d", []byte("bsn:999911120"))
		if err != nil {
			b.Fatal(err)
		}
		_ = bl
		if _, err := bl.Finalize(ev); err != nil {
			b.Fatal(err)
		}
	}
}
