package mql

import (
	"math/big"
	"testing"
)

// TestDecimalTo128 checks the one Decimal128 rounding shared by expressions
// and update operators: a single half-to-even rounding to 34 digits or to
// the smallest exponent, clamping and saturation.
func TestDecimalTo128(t *testing.T) {
	t.Parallel()
	big10 := func(s string) *big.Int {
		n, ok := new(big.Int).SetString(s, 10)
		if !ok {
			t.Fatalf("bad big integer %q", s)
		}
		return n
	}
	tests := []struct {
		name string
		d    aggDec
		want string
	}{
		{"exact", aggDec{coef: big.NewInt(12345), exp: -2}, "123.45"},
		{"NaN", aggDec{nan: true}, "NaN"},
		{"negative infinity", aggDec{inf: -1}, "-Infinity"},
		{"35 digits round half to even down", aggDec{coef: big10("12345678901234567890123456789012345"), exp: 0}, "1.234567890123456789012345678901234E+34"},
		{"35 digits round half to even up", aggDec{coef: big10("12345678901234567890123456789012355"), exp: 0}, "1.234567890123456789012345678901236E+34"},
		{"rounding carries a digit", aggDec{coef: big10("99999999999999999999999999999999995"), exp: 0}, "1.000000000000000000000000000000000E+35"},
		{"negative rounds away from zero", aggDec{coef: big10("-12345678901234567890123456789012346"), exp: 0}, "-1.234567890123456789012345678901235E+34"},
		// 1.49E-6176 rounds once to 1E-6176; rounding digit by digit would
		// give 1.5 and then 2.
		{"subnormal rounds once", aggDec{coef: big.NewInt(149), exp: -6178}, "1E-6176"},
		{"subnormal half to even", aggDec{coef: big.NewInt(25), exp: -6177}, "2E-6176"},
		{"underflow to zero", aggDec{coef: big.NewInt(4), exp: -6177}, "0E-6176"},
		{"zero clamps exponent", aggDec{coef: big.NewInt(0), exp: 7000}, "0E+6111"},
		{"large exponent clamps with zeros", aggDec{coef: big.NewInt(1), exp: 6112}, "1.0E+6112"},
		{"overflow saturates", aggDec{coef: big.NewInt(9), exp: 7000}, "Infinity"},
		{"negative overflow saturates", aggDec{coef: big.NewInt(-9), exp: 7000}, "-Infinity"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := tc.d.to128().String(); got != tc.want {
				t.Fatalf("to128 = %s, want %s", got, tc.want)
			}
		})
	}
}
