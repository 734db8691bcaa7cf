package issuer_test

import "encoding/base64"

func jsonSegment(s string) ([]byte, error) { return base64.RawURLEncoding.DecodeString(s) }
