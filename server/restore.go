package server

import (
	"errors"
	"fmt"

	"github.com/raftkms/raftkms/keycrypto"
	"github.com/raftkms/raftkms/raftnode"
)

// ErrRestoreRootKey refuses a snapshot saved by a cluster with another root
// key: none of its key material would open.
var ErrRestoreRootKey = errors.New("server: the snapshot was saved under another root key")

// CheckRestore tells whether a node with root may restore b: the saved
// state's root-key check value must be root's. A state that records no
// root-key check (a cluster whose nodes never registered) holds no root key
// to compare, and restores.
func CheckRestore(b *raftnode.Backup, root *keycrypto.RootKey) error {
	if len(b.RootKeyCheck) == 0 || root.MatchesCheckValue(b.RootKeyCheck) {
		return nil
	}
	return fmt.Errorf("%w: the snapshot's root key is %s, this node's is %s; start the restore with the root key file of the cluster that saved it",
		ErrRestoreRootKey, b.RootKeyID, root.ID())
}
