package cliusage

import "testing"

func TestSuggest(t *testing.T) {
	names := []string{"concurrency", "job", "limit", "database-url", "json"}
	tests := map[string]string{
		"concurency":  " (did you mean --concurrency?)",
		"jbo":         " (did you mean --job?)",
		"lmit":        " (did you mean --limit?)",
		"databse-url": " (did you mean --database-url?)",
		"xyzzy":       "",
		"q":           "",
	}
	for got, want := range tests {
		if s := Suggest(got, names, "--"); s != want {
			t.Errorf("Suggest(%q) = %q, want %q", got, s, want)
		}
	}
}
