package fsm_test

import (
	"testing"

	"github.com/raftkms/raftkms/fsm"
	eventsv1 "github.com/raftkms/raftkms/proto/events/v1"
)

// TestMaxSchema: a node configured to schema 1 applies schema-1 entries and
// halts on a schema-2 entry, as an older build would, which is why leaders
// propose at the lowest schema the members announced.
func TestMaxSchema(t *testing.T) {
	if _, err := fsm.New(fsm.Config{MaxSchema: fsm.SchemaVersion + 1}); err == nil {
		t.Fatal("a MaxSchema newer than the build was accepted")
	}
	f, err := fsm.New(fsm.Config{MaxSchema: 1})
	if err != nil {
		t.Fatal(err)
	}
	entry := func(schema uint32, id string) []byte {
		data, err := fsm.EncodeEntry(&eventsv1.Envelope{SchemaVersion: schema, TimeUnixNano: 1, RequestId: id,
			Event: &eventsv1.Envelope_RegisterNode{RegisterNode: &eventsv1.RegisterNode{NodeId: "n1", GrpcAddr: "a:1", RaftAddr: "a:2", MaxSchemaVersion: 2}}})
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	if res := f.ApplyEntry(1, entry(1, "r1")); res.Err != nil {
		t.Fatalf("schema-1 entry: %v", res.Err)
	}
	if n, ok := f.Node("n1"); !ok || n.MaxSchema != 2 || n.SupportedSchema() != 2 || f.LastSchema() != 1 {
		t.Fatalf("node record %+v (ok %v), last schema %d", n, ok, f.LastSchema())
	}
	defer func() {
		if recover() == nil {
			t.Fatal("a schema-1 node applied a schema-2 entry")
		}
	}()
	f.ApplyEntry(2, entry(2, "r2"))
}
