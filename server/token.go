package server

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"

	"github.com/vmre/vmre/internal/bearer"
)

// tokenBytes is the size of a launch token: 256 random bits.
const tokenBytes = 32

// tokenKey indexes the registry. Launches are looked up by the SHA-256 of
// their token, so the map lookup's timing depends only on a hash the caller
// cannot steer, and the token itself is then compared in constant time.
type tokenKey [sha256.Size]byte

func newToken() string {
	b := make([]byte, tokenBytes)
	rand.Read(b) // never returns an error; it crashes the program if the OS has no randomness
	return hex.EncodeToString(b)
}

func keyOf(token string) tokenKey { return sha256.Sum256([]byte(token)) }

// bearerToken returns the token of an "Authorization: Bearer TOKEN" header
// value, or "" when there is none: internal/bearer's parser, shared with
// the admin service.
func bearerToken(header string) string {
	token, _ := bearer.Token(header)
	return token
}
