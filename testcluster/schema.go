package testcluster

// WithMaxSchema makes node i announce and accept event schemas up to
// schema(i) only, as an older build would (0: this build's). It is asked at
// every start, so a test upgrades a node by restarting it after schema(i)
// has changed.
func WithMaxSchema(schema func(i int) uint32) APIOption {
	return func(a *apiOptions) { a.maxSchema = schema }
}

func (a *apiOptions) maxSchemaOf(i int) uint32 {
	if a.maxSchema == nil {
		return 0
	}
	return a.maxSchema(i)
}
