package iu

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash"
	"slices"
	"strings"
)

// Digest is a content address: the SHA-256 of a canonical encoding, written
// "sha256:<64 lowercase hex>". It is a small comparable value, usable as a map
// key, in the manner of perkeep's blob.Ref.
type Digest [sha256.Size]byte

const digestPrefix = "sha256:"

// String returns the digest as "sha256:<hex>", or "" for the zero digest.
func (d Digest) String() string {
	if d.IsZero() {
		return ""
	}
	return digestPrefix + hex.EncodeToString(d[:])
}

// Hex returns the 64 hex digits of the digest, without the prefix.
func (d Digest) Hex() string { return hex.EncodeToString(d[:]) }

// IsZero reports whether d is the zero value (no digest).
func (d Digest) IsZero() bool { return d == Digest{} }

// MarshalText encodes the digest as "sha256:<hex>".
func (d Digest) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText parses "sha256:<hex>".
func (d *Digest) UnmarshalText(b []byte) error {
	p, err := ParseDigest(string(b))
	if err != nil {
		return err
	}
	*d = p
	return nil
}

// StoredDigest reads a digest as a store holds it. A malformed one, which
// only a change made outside iu leaves, reads as zero: it matches nothing,
// so verify reports the instance or template instead of every read failing.
func StoredDigest(s string) Digest {
	d, _ := ParseDigest(s)
	return d
}

// ParseDigest parses "sha256:<64 lowercase hex>".
func ParseDigest(s string) (Digest, error) {
	var d Digest
	h, ok := strings.CutPrefix(s, digestPrefix)
	if !ok || len(h) != 2*sha256.Size || strings.ToLower(h) != h {
		return d, fmt.Errorf("malformed digest %q: want sha256:<64 lowercase hex>", s)
	}
	if _, err := hex.Decode(d[:], []byte(h)); err != nil {
		return d, fmt.Errorf("malformed digest %q: %w", s, err)
	}
	return d, nil
}

// The canonical encodings.
//
// Every variable-length field is written as uvarint(len) followed by its
// bytes, so no two different inputs share an encoding, whatever bytes the
// fields hold. Each encoding starts with a domain tag so that a piece and a
// collection can never hash to the same address.
//
//	piece id   = sha256("iu/piece/v1\x00" || lp(kind) || lp(body))
//	digest     = sha256("iu/collection/v1\x00" || uvarint(#slots) ||
//	             for each slot in byte order of slot id:
//	               lp(slot) || piece id (32 raw bytes) ||
//	               uvarint(#edges) || lp(edge)... in byte order)
//
// The collection digest covers the graph only: which piece fills which slot
// and which slots each slot comes after. It does not depend on the order in
// which slots were declared or rows were stored.
const (
	pieceTag      = "iu/piece/v1\x00"
	collectionTag = "iu/collection/v1\x00"
	payloadTag    = "iu/payload/v1\x00"
)

func writeLP(h hash.Hash, s string) {
	var buf [binary.MaxVarintLen64]byte
	n := binary.PutUvarint(buf[:], uint64(len(s)))
	h.Write(buf[:n])
	h.Write([]byte(s))
}

func writeUvarint(h hash.Hash, v int) {
	var buf [binary.MaxVarintLen64]byte
	n := binary.PutUvarint(buf[:], uint64(v))
	h.Write(buf[:n])
}

func sum(h hash.Hash) Digest {
	var d Digest
	h.Sum(d[:0])
	return d
}

// PieceID returns the content address of a piece of the given kind and body.
func PieceID(kind, body string) Digest {
	h := sha256.New()
	h.Write([]byte(pieceTag))
	writeLP(h, kind)
	writeLP(h, body)
	return sum(h)
}

// GraphDigest returns the digest of a collection's graph. slots is not
// modified; its order does not matter.
func GraphDigest(slots []Slot) Digest {
	order := make([]int, len(slots))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int { return strings.Compare(slots[a].ID, slots[b].ID) })
	h := sha256.New()
	h.Write([]byte(collectionTag))
	writeUvarint(h, len(slots))
	var edges []string
	for _, i := range order {
		s := slots[i]
		writeLP(h, s.ID)
		h.Write(s.Piece[:])
		edges = append(edges[:0], s.After...)
		slices.Sort(edges)
		writeUvarint(h, len(edges))
		for _, e := range edges {
			writeLP(h, e)
		}
	}
	return sum(h)
}
