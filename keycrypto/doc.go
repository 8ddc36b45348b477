// Package keycrypto holds raftkms's cryptography: the cluster root key that
// seals all key material (in events, in BoltDB, in snapshots) and the check
// value that lets a node notice it holds the wrong one, the ciphertext blob
// formats clients get back from Encrypt, data keys, the per-node cache of
// one unsealed VersionKey per key version, and the unwrapping of key
// material that users import.
//
// It imports only the standard library, so the state machine and the Raft
// wiring never see the root key or plaintext material.
package keycrypto
