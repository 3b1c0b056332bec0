package smtp

// WithoutHoldDown turns off the pool's hold-down after a failed connection
// (see holdDown), for a test that delivers again at once after one, which
// the engine, backing off longer, never does. Call it before the first
// delivery.
func WithoutHoldDown(o *Output) { o.pool.HoldDown(0) }
