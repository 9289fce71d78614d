package mql

import (
	"math"
	"math/big"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
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

func TestSafeArith(t *testing.T) {
	dec := func(s string) bson.Decimal128 {
		d, err := bson.ParseDecimal128(s)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	for _, tc := range []struct {
		name string
		mul  bool
		a, b any
		want any
		ok   bool
	}{
		{"int32 add", false, int32(2), int32(3), int32(5), true},
		{"int32 mul overflow widens", true, int32(1 << 20), int32(1 << 20), int64(1 << 40), true},
		{"int64 mul overflow", true, int64(1 << 62), int32(4), nil, false},
		{"int64 min times -1", true, int64(-1 << 63), int64(-1), nil, false},
		{"double mul", true, 1.5, int64(2), 3.0, true},
		{"decimal add", false, dec("0.1"), dec("0.2"), dec("0.3"), true},
		{"decimal rounds half to even", false, dec("1234567890123456789012345678901234"), dec("0.5"), dec("1234567890123456789012345678901234"), true},
		{"decimal rounds up", false, dec("1234567890123456789012345678901235"), dec("0.5"), dec("1.234567890123456789012345678901236E+33"), true},
		{"decimal overflow is infinity", true, dec("9E+6000"), dec("9E+6000"), dec("Infinity"), true},
		{"decimal NaN", false, dec("NaN"), int32(1), dec("NaN"), true},
		{"infinity times zero", true, dec("-Infinity"), int32(0), dec("NaN"), true},
		{"infinity minus infinity", false, dec("Infinity"), dec("-Infinity"), dec("NaN"), true},
		{"infinity times negative", true, dec("Infinity"), int32(-2), dec("-Infinity"), true},
		{"double infinity to decimal", false, dec("1"), math.Inf(-1), dec("-Infinity"), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := SafeArith(tc.mul, tc.a, tc.b)
			if ok != tc.ok || (ok && !Identical(got, tc.want)) {
				t.Fatalf("got %s %v, want %s %v", FormatValue(got), ok, FormatValue(tc.want), tc.ok)
			}
		})
	}
}
