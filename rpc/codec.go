package rpc

import (
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	protocodec "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// ServerCodec is the option every raftkms gRPC server is built with: gRPC's
// proto codec, except that a request to a raftkms service that does not
// decode (a string field with invalid UTF-8, malformed wire data) becomes
// InvalidArgument with ValidationException. gRPC itself answers Internal for
// any decoding failure, before a handler or interceptor runs; this codec lets
// the request reach the interceptor marked as bad, and the interceptor
// refuses it.
func ServerCodec() grpc.ServerOption {
	return grpc.ForceServerCodecV2(codec{encoding.GetCodecV2(protocodec.Name)})
}

type codec struct{ encoding.CodecV2 }

// badInputField is the field number under which a request that did not
// decode carries the decoding error to the interceptor, in its unknown
// fields (the largest field number protobuf allows; no raftkms message uses
// it, and a client that sends it only gets its own request refused).
const badInputField protowire.Number = protowire.MaxValidNumber

func (c codec) Unmarshal(data mem.BufferSlice, v any) error {
	err := c.CodecV2.Unmarshal(data, v)
	if err == nil {
		return nil
	}
	m, ok := v.(proto.Message)
	if !ok || !strings.HasPrefix(string(m.ProtoReflect().Descriptor().FullName()), raftkmsPackage) {
		return err // others' services (health, reflection) keep gRPC's own handling
	}
	proto.Reset(m)
	var b []byte
	b = protowire.AppendTag(b, badInputField, protowire.BytesType)
	b = protowire.AppendString(b, err.Error())
	m.ProtoReflect().SetUnknown(b)
	return nil
}

// badInput refuses a request the codec marked as undecodable.
func badInput(req any) error {
	m, ok := req.(proto.Message)
	if !ok {
		return nil
	}
	b := m.ProtoReflect().GetUnknown()
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil
		}
		b = b[n:]
		if num == badInputField && typ == protowire.BytesType {
			msg, _ := protowire.ConsumeString(b)
			msg = strings.TrimPrefix(msg, "proto: ")
			return validationErr("the request cannot be decoded: %s", msg)
		}
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return nil
		}
		b = b[n:]
	}
	return nil
}
