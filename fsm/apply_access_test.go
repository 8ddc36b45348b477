package fsm

import (
	"bytes"
	"strings"
	"testing"

	eventsv1 "github.com/raftkms/raftkms/proto/events/v1"
)

func createAccess(id, identity string) *eventsv1.Envelope {
	return ev(&eventsv1.CreateAccessKey{AccessKeyId: id, Identity: identity, SealedSecret: []byte("sealed(" + id + ")")})
}

func TestAccessKeys(t *testing.T) {
	has := func(id, identity string) func(t *testing.T, h *harness) {
		return func(t *testing.T, h *harness) {
			t.Helper()
			a, ok := h.f.AccessKey(id)
			switch {
			case identity == "" && ok:
				t.Fatalf("access key %s still exists", id)
			case identity != "" && (!ok || a.Identity != identity || !bytes.Equal(a.SealedSecret, []byte("sealed("+id+")")) || a.CreatedAt == 0):
				t.Fatalf("access key %s: %+v", id, a)
			}
		}
	}
	runCases(t, []transitionCase{
		{name: "create", event: createAccess("AK1", "alice"), check: has("AK1", "alice")},
		{name: "create twice", setup: []*eventsv1.Envelope{createAccess("AK1", "alice")}, event: createAccess("AK1", "bob"), want: ErrAlreadyExists},
		{name: "create without ID", event: createAccess("", "alice"), want: ErrValidation},
		{name: "create with a long ID", event: createAccess(strings.Repeat("A", maxAccessKeyIDBytes+1), "alice"), want: ErrValidation},
		{name: "create without identity", event: createAccess("AK1", ""), want: ErrValidation},
		{name: "create without secret", event: ev(&eventsv1.CreateAccessKey{AccessKeyId: "AK1", Identity: "alice"}), want: ErrValidation},
		{name: "delete", setup: []*eventsv1.Envelope{createAccess("AK1", "alice")}, event: ev(&eventsv1.DeleteAccessKey{AccessKeyId: "AK1"}), check: has("AK1", "")},
		{name: "delete missing", event: ev(&eventsv1.DeleteAccessKey{AccessKeyId: "AK1"}), want: ErrNotFound},
	})

	h := newHarness(t)
	h.ok(createAccess("AK2", "bob"))
	h.ok(createAccess("AK1", "alice"))
	h.ok(createAccess("AK3", "alice"))
	ids := func(as []*AccessKey) string {
		var s []string
		for _, a := range as {
			s = append(s, a.ID)
		}
		return strings.Join(s, ",")
	}
	if got := ids(h.f.AccessKeys("alice")); got != "AK1,AK3" {
		t.Fatalf("alice's access keys: %s", got)
	}
	if got := ids(h.f.AccessKeys("")); got != "AK1,AK2,AK3" {
		t.Fatalf("all access keys: %s", got)
	}
	r := restoreCopy(t, h.f)
	if r.Digest() != h.f.Digest() || ids(r.AccessKeys("")) != "AK1,AK2,AK3" {
		t.Fatal("restore lost access keys")
	}
	before := h.f.Digest()
	h.ok(ev(&eventsv1.DeleteAccessKey{AccessKeyId: "AK2"}))
	if h.f.Digest() == before {
		t.Fatal("the digest does not cover access keys")
	}
}
