package rpc

import "testing"

func TestARN(t *testing.T) {
	for _, tc := range []struct {
		in   ARN
		want string
		ok   bool
	}{
		{ARN{}, "arn:aws:kms:us-east-1:000000000000:", true},
		{ARN{Partition: "aws-cn", Region: "cn-north-1", Account: "111122223333"}, "arn:aws-cn:kms:cn-north-1:111122223333:", true},
		{ARN{Region: "eu:west"}, "", false},
		{ARN{Account: "acct"}, "", false},
		{ARN{Partition: "a/b"}, "", false},
	} {
		a := tc.in.withDefaults()
		err := a.check()
		if (err == nil) != tc.ok {
			t.Errorf("%+v: check = %v", tc.in, err)
			continue
		}
		if tc.ok && a.prefix() != tc.want {
			t.Errorf("%+v: prefix %q, want %q", tc.in, a.prefix(), tc.want)
		}
	}
}
