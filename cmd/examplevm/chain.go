package main

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"time"
)

// maxDataBytes caps the payload of one block.
const maxDataBytes = 1 << 20

// genesisData is the payload of the genesis block. It makes the genesis id
// the same on every run.
var genesisData = []byte("vmre examplevm genesis")

// Errors of the chain; test for them with errors.Is.
var (
	errDataTooLarge  = errors.New("block data too large")
	errBlockNotFound = errors.New("block not found")
)

// block is one block of the chain. Its Data must not be modified.
type block struct {
	Height   uint64
	ID       string // blockID(ParentID, Height, Data)
	ParentID string // empty for genesis
	Data     []byte
	Time     time.Time
}

// chain is an in-memory chain that only grows. It is safe for concurrent
// use; its zero value is not: use newChain.
type chain struct {
	now func() time.Time

	mu     sync.RWMutex
	blocks []block // blocks[h].Height == h
}

// newChain returns a chain holding its genesis block at height 0. now
// stamps new blocks (time.Now when nil).
func newChain(now func() time.Time) *chain {
	if now == nil {
		now = time.Now
	}
	c := &chain{now: now}
	c.blocks = []block{newBlock(nil, genesisData, now())}
	return c
}

// Build appends a block holding a copy of data on top of the last accepted
// block and returns it.
func (c *chain) Build(data []byte) (block, error) {
	if len(data) > maxDataBytes {
		return block{}, fmt.Errorf("%w: %d bytes, the limit is %d (1 MiB)", errDataTooLarge, len(data), maxDataBytes)
	}
	data = append([]byte(nil), data...)
	c.mu.Lock()
	defer c.mu.Unlock()
	b := newBlock(&c.blocks[len(c.blocks)-1], data, c.now())
	c.blocks = append(c.blocks, b)
	return b, nil
}

// Get returns the block at height.
func (c *chain) Get(height uint64) (block, error) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	last := uint64(len(c.blocks) - 1)
	if height > last {
		return block{}, fmt.Errorf("%w at height %d: the last accepted height is %d", errBlockNotFound, height, last)
	}
	return c.blocks[height], nil
}

// LastAccepted returns the newest block.
func (c *chain) LastAccepted() block {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.blocks[len(c.blocks)-1]
}

// newBlock makes the block after parent (genesis when parent is nil).
func newBlock(parent *block, data []byte, t time.Time) block {
	b := block{Data: data, Time: t}
	if parent != nil {
		b.Height, b.ParentID = parent.Height+1, parent.ID
	}
	b.ID = blockID(b.ParentID, b.Height, b.Data)
	return b
}

// blockID is the hex SHA-256 of the parent id (as its hex text, empty for
// genesis), the height as 8 big-endian bytes, and the data.
func blockID(parentID string, height uint64, data []byte) string {
	h := sha256.New()
	h.Write([]byte(parentID))
	h.Write(binary.BigEndian.AppendUint64(nil, height))
	h.Write(data)
	return hex.EncodeToString(h.Sum(nil))
}
