package srs

import (
	"fmt"
	"os"
	"strings"
)

// ReadSecrets reads an SRS secret file (srs_secret_file): one secret a
// line, the first signs, every one verifies (so that a new secret can be
// put first while bounces to addresses signed with the old one still come
// back). Blank lines and lines starting with # are skipped.
func ReadSecrets(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if len(line) < 16 {
			return nil, fmt.Errorf("%s: a secret of %d characters is too short to keep SRS addresses from being forged (16 at least)", path, len(line))
		}
		out = append(out, line)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s has no secret", path)
	}
	return out, nil
}
