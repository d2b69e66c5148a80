// Package bearer reads and checks the bearer tokens of HTTP requests
// (RFC 6750): the one parser of "Authorization: Bearer TOKEN" for the
// engine, the admin service and the node's metrics.
package bearer

import (
	"crypto/sha256"
	"crypto/subtle"
	"strings"
)

const scheme = "Bearer"

// Token returns the token of an Authorization header value: "Bearer
// TOKEN", the scheme in any case (RFC 9110 makes it case-insensitive), the
// token trimmed of spaces. ok is false when the value is not a bearer
// credential or its token is empty.
func Token(header string) (token string, ok bool) {
	if len(header) <= len(scheme) || !strings.EqualFold(header[:len(scheme)], scheme) || header[len(scheme)] != ' ' {
		return "", false
	}
	token = strings.TrimSpace(header[len(scheme)+1:])
	return token, token != ""
}

// Key is the digest of a token, which Matches compares in constant time:
// comparing digests of a fixed length tells nothing of the token's length.
type Key [sha256.Size]byte

// KeyOf returns the key of token.
func KeyOf(token string) Key { return sha256.Sum256([]byte(token)) }

// Matches reports whether the Authorization header value carries the token
// of k. The comparison takes the same time whatever the header holds.
func (k Key) Matches(header string) bool {
	token, ok := Token(header)
	got := KeyOf(token)
	return subtle.ConstantTimeCompare(got[:], k[:]) == 1 && ok
}

// Header is the Authorization header value that carries token.
func Header(token string) string { return scheme + " " + token }
