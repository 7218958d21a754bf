package store

import "testing"

func TestParseControl(t *testing.T) {
	t.Parallel()
	cases := []struct {
		payload string
		want    JobRef
		ok      bool
	}{
		{`{"action":"cancel","kind":"run","id":"r1"}`, JobRef{Kind: KindRun, ID: "r1"}, true},
		{`{"action":"cancel","kind":"build","id":"b1"}`, JobRef{Kind: KindBuild, ID: "b1"}, true},
		{`{"action":"pause","kind":"run","id":"r1"}`, JobRef{}, false},
		{`{"action":"cancel","kind":"document","id":"d"}`, JobRef{}, false},
		{`{"action":"cancel","kind":"run","id":""}`, JobRef{}, false},
		{`not json`, JobRef{}, false},
	}
	for _, tc := range cases {
		got, ok := parseControl(tc.payload)
		if got != tc.want || ok != tc.ok {
			t.Errorf("parseControl(%s) = %+v, %v; want %+v, %v", tc.payload, got, ok, tc.want, tc.ok)
		}
	}
}
