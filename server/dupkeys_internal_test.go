package server

import "testing"

func TestDuplicateKeyScan(t *testing.T) {
	for body, want := range map[string]string{
		`{"order_id":"a","amount":5,"order\u005fid":"b"}`: "order_id",
		`{"order_id":"a","ORDER_ID":"b"}`:                 "ORDER_ID",
		`{"a":[{"b":1},{"b":2,"b":3}]}`:                   "b",
		`{"\u212a":1,"k":2}`:                              "k", // KELVIN SIGN folds to k
		`{"s":"\"a\"","x":{"s":1}}`:                       "",
		` [ {"a":1} , {"a":2} ] `:                         "",
	} {
		got, found := duplicateKey([]byte(body))
		if got != want || found != (want != "") {
			t.Errorf("duplicateKey(%s) = %q, %v; want %q", body, got, found, want)
		}
	}
}
