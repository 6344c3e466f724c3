package postgres

import (
	"context"
	"slices"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/iu-engine/iu/internal/pgtest"
)

// The server reads back exactly the elements an array literal was built
// from, whatever they hold.
func TestArrayLiteralsReadBackExactly(t *testing.T) {
	ctx := context.Background()
	c, err := pgx.Connect(ctx, pgtest.DSN(t))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	for _, elems := range [][]string{
		{},
		{""},
		{"s1", "s2 s3", "NULL", "null", `a"b`, `back\slash`, "{x}", "a,b", " lead", "é"},
	} {
		lit := arrayLiteral(len(elems), func(i int) string { return elems[i] }, true)
		var got []string
		if err := c.QueryRow(ctx, `SELECT $1::text[]`, lit).Scan(&got); err != nil {
			t.Fatalf("%s: %v", lit, err)
		}
		if !slices.Equal(got, elems) && !(len(got) == 0 && len(elems) == 0) {
			t.Fatalf("%s read back as %q, want %q", lit, got, elems)
		}
	}
	var pos []int32
	if err := c.QueryRow(ctx, `SELECT $1::int[]`, arrayLiteral(3, func(i int) string { return []string{"0", "1", "2"}[i] }, false)).Scan(&pos); err != nil || !slices.Equal(pos, []int32{0, 1, 2}) {
		t.Fatalf("positions: %v, %v", pos, err)
	}
}
