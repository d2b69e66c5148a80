package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

var fixedTime = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

func fixedClock() time.Time { return fixedTime }

func TestGenesis(t *testing.T) {
	t.Parallel()
	g := newChain(fixedClock).LastAccepted()
	if g.Height != 0 || g.ParentID != "" || !bytes.Equal(g.Data, genesisData) || !g.Time.Equal(fixedTime) {
		t.Fatalf("genesis = %+v", g)
	}
	// The genesis id is the same on every run.
	if other := newChain(nil).LastAccepted(); other.ID != g.ID {
		t.Fatalf("genesis ids differ: %s and %s", g.ID, other.ID)
	}
	if want := wantID("", 0, genesisData); g.ID != want {
		t.Fatalf("genesis id = %s, want %s", g.ID, want)
	}
}

// wantID computes a block id independently of blockID.
func wantID(parent string, height uint64, data []byte) string {
	var buf []byte
	buf = append(buf, parent...)
	buf = binary.BigEndian.AppendUint64(buf, height)
	buf = append(buf, data...)
	sum := sha256.Sum256(buf)
	return hex.EncodeToString(sum[:])
}

func TestBuild(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		data    []byte
		wantErr error
	}{
		{"empty", nil, nil},
		{"small", []byte("hello"), nil},
		{"exactly 1 MiB", make([]byte, maxDataBytes), nil},
		{"1 MiB plus one byte", make([]byte, maxDataBytes+1), errDataTooLarge},
		{"2 MiB", make([]byte, 2*maxDataBytes), errDataTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := newChain(fixedClock)
			genesis := c.LastAccepted()
			b, err := c.Build(tt.data)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Build error = %v, want %v", err, tt.wantErr)
			}
			if err != nil {
				if !strings.Contains(err.Error(), "the limit is 1048576") {
					t.Errorf("error %q does not name the limit", err)
				}
				if last := c.LastAccepted(); last.ID != genesis.ID {
					t.Errorf("a refused block changed the chain: last = %+v", last)
				}
				return
			}
			want := block{Height: 1, ParentID: genesis.ID, Data: tt.data, Time: fixedTime,
				ID: wantID(genesis.ID, 1, tt.data)}
			if !sameBlock(b, want) {
				t.Fatalf("Build = %+v, want %+v", b, want)
			}
			if last := c.LastAccepted(); !sameBlock(last, b) {
				t.Fatalf("LastAccepted = %+v, want %+v", last, b)
			}
		})
	}
}

func sameBlock(a, b block) bool {
	return a.Height == b.Height && a.ID == b.ID && a.ParentID == b.ParentID &&
		bytes.Equal(a.Data, b.Data) && a.Time.Equal(b.Time)
}

func TestBuildCopiesData(t *testing.T) {
	t.Parallel()
	c := newChain(nil)
	data := []byte("abc")
	b, err := c.Build(data)
	if err != nil {
		t.Fatal(err)
	}
	data[0] = 'X'
	got, err := c.Get(b.Height)
	if err != nil {
		t.Fatal(err)
	}
	if string(got.Data) != "abc" || got.ID != wantID(got.ParentID, 1, []byte("abc")) {
		t.Fatalf("the caller's buffer changed the block: %+v", got)
	}
}

func TestGet(t *testing.T) {
	t.Parallel()
	c := newChain(fixedClock)
	built := []block{c.LastAccepted()}
	for _, d := range []string{"one", "two", "three"} {
		b, err := c.Build([]byte(d))
		if err != nil {
			t.Fatal(err)
		}
		built = append(built, b)
	}
	tests := []struct {
		height  uint64
		want    *block
		wantMsg string
	}{
		{0, &built[0], ""},
		{1, &built[1], ""},
		{3, &built[3], ""},
		{4, nil, "block not found at height 4: the last accepted height is 3"},
		{1 << 63, nil, "the last accepted height is 3"},
	}
	for _, tt := range tests {
		got, err := c.Get(tt.height)
		if tt.want == nil {
			if !errors.Is(err, errBlockNotFound) || !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("Get(%d) error = %v, want %q", tt.height, err, tt.wantMsg)
			}
			continue
		}
		if err != nil || !sameBlock(got, *tt.want) {
			t.Errorf("Get(%d) = %+v, %v; want %+v", tt.height, got, err, *tt.want)
		}
	}
	// Each block links to its parent.
	for h := 1; h < len(built); h++ {
		if built[h].ParentID != built[h-1].ID || built[h].Height != uint64(h) {
			t.Errorf("block %d = %+v does not follow %+v", h, built[h], built[h-1])
		}
	}
}

func TestConcurrentBuilds(t *testing.T) {
	t.Parallel()
	const workers, perWorker = 8, 50
	c := newChain(nil)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for range perWorker {
				if _, err := c.Build([]byte("x")); err != nil {
					t.Error(err)
					return
				}
				c.LastAccepted()
			}
		})
	}
	wg.Wait()
	last := c.LastAccepted()
	if last.Height != workers*perWorker {
		t.Fatalf("last height = %d, want %d", last.Height, workers*perWorker)
	}
	seen := make(map[string]bool)
	for h := uint64(0); h <= last.Height; h++ {
		b, err := c.Get(h)
		if err != nil {
			t.Fatal(err)
		}
		if h > 0 {
			parent, _ := c.Get(h - 1)
			if b.ParentID != parent.ID {
				t.Fatalf("block %d has parent %s, want %s", h, b.ParentID, parent.ID)
			}
		}
		if seen[b.ID] {
			t.Fatalf("id %s repeats", b.ID)
		}
		seen[b.ID] = true
	}
}
