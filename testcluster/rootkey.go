package testcluster

import "github.com/raftkms/raftkms/keycrypto"

// WithRootKeys gives node i the root key root(i) when it starts (and each
// time it restarts), instead of the cluster's shared one; root(i) may
// return nil for the shared one. Tests start a node with the wrong root key
// this way.
func WithRootKeys(root func(i int) *keycrypto.RootKey) APIOption {
	return func(a *apiOptions) { a.rootFor = root }
}

// rootOf is node i's root key.
func (a *apiOptions) rootOf(i int) *keycrypto.RootKey {
	if a.rootFor != nil {
		if r := a.rootFor(i); r != nil {
			return r
		}
	}
	return a.root
}
