package admin

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
)

// errTrailingData refuses a body with more than one JSON value: a client
// that sent {"all": true} {"trigger": "x"} meant something the first value
// alone does not say, and acting on that value alone could purge or
// replay far more than it asked for.
var errTrailingData = errors.New("trailing data after the JSON body")

// decodeJSONBody decodes data, one JSON value, into v, refusing the object
// fields v does not have and anything but white space after the value
// (errTrailingData). It is how every body of the admin API is read.
func decodeJSONBody(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	var extra json.RawMessage
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return errTrailingData
	}
	return nil
}
