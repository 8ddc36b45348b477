// Package compose tests the container deployment end to end: it builds the
// FROM scratch image from static binaries, runs docker-compose.yml (with the
// docker-compose.test.yml floors) as a three-node cluster under a project
// name of its own, and crashes and then partitions the leader while keys
// rotate every two seconds, checking that the nodes converge, that no
// rotation is lost or doubled, and that every ciphertext decrypts on every
// node.
//
// The package holds only tests. They need a Docker Engine and `docker
// compose` (or docker-compose v1); without them they skip, saying why. A run
// leaves no containers, networks, volumes or images behind; if one is
// interrupted, `docker ps -a --filter name=raftkms-test-` shows what is left.
package compose
