package mongoerr

import (
	"errors"
	"fmt"
	"testing"
)

func TestCodeString(t *testing.T) {
	tests := []struct {
		code Code
		want string
	}{
		{BadValue, "BadValue"},
		{InvalidIDField, "InvalidIdField"},
		{QueryExceededMemoryLimitNoDiskUseAllowed, "QueryExceededMemoryLimitNoDiskUseAllowed"},
		{UnrecognizedStage, "Location40324"},
		{Code(12345), "Location12345"},
	}
	for _, tt := range tests {
		if got := tt.code.String(); got != tt.want {
			t.Errorf("Code(%d).String() = %q, want %q", int32(tt.code), got, tt.want)
		}
	}
}

func TestErrorf(t *testing.T) {
	err := fmt.Errorf("parse: %w", Errorf(FailedToParse, "unknown operator: %s", "$foo"))
	var me *Error
	if !errors.As(err, &me) {
		t.Fatalf("errors.As(%v) = false", err)
	}
	if me.Code != FailedToParse || me.Message != "unknown operator: $foo" || me.Labels != nil {
		t.Errorf("Errorf = %+v", me)
	}
	if got, want := err.Error(), "parse: FailedToParse: unknown operator: $foo"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}
