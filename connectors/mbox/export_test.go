package mbox

import "io"

// SetWrap puts wrap between o's writes and its file, so that a test can
// make a write fail part-way.
func SetWrap(o *Output, wrap func(io.Writer) io.Writer) { o.wrap = wrap }
