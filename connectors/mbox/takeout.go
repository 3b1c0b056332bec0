package mbox

// SplitLabels splits the value of Google Takeout's X-Gmail-Labels into its
// labels as the input reads them (one line of CSV, each label perhaps an
// RFC 2047 encoded word): for a migration into Gmail, which gives a
// message every label it had rather than a folder per label.
func SplitLabels(v string) []string { return splitLabels(v) }
