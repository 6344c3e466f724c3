package iu

import (
	"context"
	"strings"
	"time"
)

// Store is iu's storage: one implementation per database (package sqlite,
// package postgres). Every rule of the engine is checked against every
// backend by the conformance suite in package storetest.
//
// Backends translate their native errors at this boundary: transient
// transaction failures wrap ErrRetryable, an unreachable or locked database
// ErrUnavailable or ErrStoreBusy, missing rows ErrNotFound.
type Store interface {
	// Update runs fn in one write transaction and commits if fn returns nil.
	// fn must be safe to run more than once: a store may run it again, as
	// PostgreSQL's does when a transaction that assumed the gates and emit
	// modes it read last finds them changed (the engine retries transient
	// failures itself, from the start, anyway).
	Update(ctx context.Context, fn func(Tx) error) error
	// UpdateOnce is Update for an fn that must run at most once (a bulk run
	// consumes a stream): the store never runs it again.
	UpdateOnce(ctx context.Context, fn func(Tx) error) error
	// View runs fn in a read-only transaction with a consistent snapshot.
	View(ctx context.Context, fn func(Tx) error) error
	// ViewFresh runs fn like View but on a brand-new connection that has
	// shared nothing with earlier work: the durability check after a bulk.
	ViewFresh(ctx context.Context, fn func(Tx) error) error
	// Describe names the store for people ("sqlite:/path/iu.db").
	Describe() string
	// LocalPath is the file the store lives in, or "" for a store on a
	// server: where a file that belongs with the store (iu serve's first
	// admin token) goes.
	LocalPath() string
	// WriteConcurrency is how many write transactions at once serve the
	// store best: 1 for a store with one writer (SQLite), more where
	// concurrent transactions overlap their round trips (PostgreSQL).
	WriteConcurrency() int
	// PoolStats describes the store's connections, for metrics.
	PoolStats() PoolStats
	Close() error
}

// Claim is the answer to one entry of Tx.Claim. It is complete once the
// transaction has committed, or once Tx.Settle has returned, whichever
// comes first; a store may complete it sooner.
type Claim struct {
	// Prior is the entry that held the key before (the event is a
	// redelivery), or nil if this transaction claimed it.
	Prior *LogEntry
}

// SplitClaims splits the entries of a Claim by what was claimed before
// it: existing holds, by idempotency key, the stored entries of the keys
// that were taken. priors has the prior entry of each such entry (nil
// where the key is now this batch's); won has the instances of the
// entries that claimed their keys, which the store writes.
func SplitClaims(entries []LogEntry, instances []*Instance, existing map[string]LogEntry) (priors []*LogEntry, won []Instance) {
	priors = make([]*LogEntry, len(entries))
	for i, e := range entries {
		if prior, taken := existing[e.IdempotencyKey]; taken {
			priors[i] = &prior
		} else if instances[i] != nil {
			won = append(won, *instances[i])
		}
	}
	return priors, won
}

// Tx is one transaction. Methods are batch-shaped so that a backend can turn a
// thousand events into a handful of round trips.
type Tx interface {
	// Gates returns the state of every gate as this transaction sees it.
	Gates(ctx context.Context) (Gates, error)
	// SetGates applies change and records each change in the gates' audit
	// trail, attributed to who. The engine passes only real changes.
	SetGates(ctx context.Context, change GateChange, who Who, at time.Time) error
	// ListGateAudit returns audit entries newest first, those older than
	// before (a Seq), at most limit.
	ListGateAudit(ctx context.Context, before int64, limit int) ([]GateAuditEntry, error)
	// InsertAudit records a change other than a gate's.
	InsertAudit(ctx context.Context, e AuditEntry) error
	// ListAudit returns audit entries newest first, those older than before
	// (a Seq), at most limit.
	ListAudit(ctx context.Context, before int64, limit int) ([]AuditEntry, error)

	// GetTemplate returns a template's header and graph (Pieces is nil), or
	// ErrUnknownTemplate.
	GetTemplate(ctx context.Context, key string) (*Template, error)
	// ListTemplates returns templates ordered by key, those after the key
	// after ("" from the first), at most limit.
	ListTemplates(ctx context.Context, after string, limit int) ([]TemplateInfo, error)
	// InsertTemplate stores a new template with its pieces (pieces already
	// stored are shared). It returns ErrTemplateExists if the key is taken.
	InsertTemplate(ctx context.Context, t *Template) error
	// SetEmitMode changes a template's emit mode, or returns ErrUnknownTemplate.
	SetEmitMode(ctx context.Context, key string, mode EmitMode) error
	// GetPieces returns the pieces with the given ids that exist.
	GetPieces(ctx context.Context, ids []Digest) (map[Digest]Piece, error)

	// Claim inserts the log entries whose idempotency keys are new, and for
	// each entry it inserts writes instances[i] (nil: none). The answers,
	// one per entry, say which keys were held already and by what entry:
	// they are complete once the transaction commits or Settle returns, so
	// that a store may send a lone claim with the COMMIT. Keys in entries
	// are distinct; under concurrency exactly one transaction claims a key.
	// A taken instance key is ErrInstanceExists.
	Claim(ctx context.Context, entries []LogEntry, instances []*Instance) ([]Claim, error)
	// Settle completes the answers of earlier Claims now, for a transaction
	// that reads them before it commits.
	Settle(ctx context.Context) error
	// InsertInstances stores instance collections, their memberships and
	// lineage (the manual path: no log entry). It returns ErrInstanceExists
	// if a key is taken.
	InsertInstances(ctx context.Context, instances []Instance) error
	// GetInstance returns one instance with its lineage, or ErrNotFound.
	GetInstance(ctx context.Context, key string) (*Instance, error)

	// GetLogEntry returns the log entry of an idempotency key, or
	// ErrNotFound.
	GetLogEntry(ctx context.Context, idempotencyKey string) (LogEntry, error)
	// SetLogStatus sets a log entry's status.
	SetLogStatus(ctx context.Context, idempotencyKey string, status Status) error
	// DeleteLogEntry deletes a log entry, releasing its key.
	DeleteLogEntry(ctx context.Context, idempotencyKey string) error
	// DeleteInstance deletes one instance: its memberships, its collection
	// and its lineage. Its migration records stay (ListMigrations finds
	// them by key). It returns what it deleted, as it was when deleted (a
	// migration may have moved it since it was read), or ErrNotFound.
	DeleteInstance(ctx context.Context, key string) (DeletedInstance, error)
	// InsertCompensation records a compensated instance.
	InsertCompensation(ctx context.Context, c Compensation) error
	// ReleaseCompensations marks released, by r, the compensations of
	// actor's instances whose event keys are still claimed (their log
	// entries have the status compensated): a rollback of the actor is
	// about to delete those entries.
	ReleaseCompensations(ctx context.Context, actor string, r Release) error
	// SetCompensationReleased marks a compensation (by Seq) as having had
	// its event's key released later, by r, and says whether it did: false
	// if it was marked already (another release got there first).
	SetCompensationReleased(ctx context.Context, seq int64, r Release) (bool, error)
	// ListCompensations returns the compensations of an instance key,
	// oldest first.
	ListCompensations(ctx context.Context, instanceKey string) ([]Compensation, error)
	// CountMigration counts the instances of mode that sel selects.
	CountMigration(ctx context.Context, sel MigrationSelector, mode Mode) (int64, error)
	// MigrateInstances moves to plan.To the first limit instances of mode
	// that sel selects after the one whose Seq is after, in creation order:
	// their memberships of plan.Remove's slots are deleted and plan.Put's
	// slots written (inserted, or replaced where the instance has the slot),
	// their collection's digest and title become plan.To's, their lineage's
	// template key and digest plan.To's, and each move is recorded as rec
	// with the instance's own key and former digest. An instance no longer on sel.From (moved meanwhile) is left
	// alone. It returns how many it moved, how many it looked at, and the
	// Seq of the last it looked at.
	MigrateInstances(ctx context.Context, sel MigrationSelector, mode Mode, after int64, limit int, plan MigrationPlan, rec InstanceMigration) (moved, seen int, last int64, err error)
	// ListMigrations returns the migrations of an instance key, oldest
	// first: those of the instance that has it now, and those of the
	// instances compensated under it before.
	ListMigrations(ctx context.Context, instanceKey string) ([]InstanceMigration, error)

	// CountSurfaces counts an actor's event-log rows, lineage rows and the
	// instance collections under an instance key prefix.
	CountSurfaces(ctx context.Context, actor, prefix string) (Surfaces, error)
	// ListInstances reads the per-instance view in creation order (Seq),
	// the rows after the Seq after that f selects, at most limit.
	ListInstances(ctx context.Context, f InstanceFilter, after int64, limit int) ([]InstanceRow, error)
	// ListEvents reads the event log newest first (Seq), the entries older
	// than before that f selects, at most limit.
	ListEvents(ctx context.Context, f EventFilter, before int64, limit int) ([]LogEntry, error)
	// ListTemplateStats reads the per-template summary view.
	ListTemplateStats(ctx context.Context) ([]TemplateStat, error)

	// RollbackActor counts what rolling back an actor's auto instantiations
	// deletes, and deletes it when apply is true: event log, then lineage,
	// then instance collections, then their memberships, and the
	// instances' migration records.
	RollbackActor(ctx context.Context, actor string, apply bool) (RollbackCounts, error)

	// ScanInstanceGraphs calls fn for each instance collection (those of
	// actor when it is not empty) in storage order, with the graph as
	// stored. Instances whose membership rows are the same may share one
	// Slots slice, which fn must not change.
	ScanInstanceGraphs(ctx context.Context, actor string, fn func(*InstanceGraph) error) error
	// ListTemplateGraphs returns every template's stored graph by key.
	ListTemplateGraphs(ctx context.Context) (map[string]*Template, error)
	// ListPieces returns every stored piece; verify hashes each once.
	ListPieces(ctx context.Context) (map[Digest]Piece, error)
	// CountGraphRows starts counting what GraphRowCounts holds, as of the
	// transaction's snapshot, and returns the function that waits for the
	// counts. A store may count on a connection of its own meanwhile, so
	// the caller goes on with its other reads first; it waits before the
	// transaction ends.
	CountGraphRows(ctx context.Context) (wait func() (GraphRowCounts, error))

	// ListTriggers returns triggers ordered by name, those after the name
	// after ("" from the first), at most limit.
	ListTriggers(ctx context.Context, after string, limit int) ([]Trigger, error)
	// InsertTrigger stores a new trigger. It returns ErrTriggerExists if the
	// name, or the same type, source and template, are taken.
	InsertTrigger(ctx context.Context, t *Trigger) error
	// DeleteTrigger deletes a trigger by name and returns it, or ErrNotFound.
	DeleteTrigger(ctx context.Context, name string) (Trigger, error)

	// InsertToken stores a new token (its hash, never its secret). It
	// returns ErrTokenExists if the name or the hash is taken.
	InsertToken(ctx context.Context, t *Token) error
	// ListTokens returns tokens, revoked ones too, ordered by name, those
	// after the name after ("" from the first), at most limit.
	ListTokens(ctx context.Context, after string, limit int) ([]Token, error)
	// RevokeToken stamps a token revoked at at, unless it already is, and
	// returns it and whether this call revoked it; ErrNotFound if there is
	// none.
	RevokeToken(ctx context.Context, name string, at time.Time) (Token, bool, error)
	// GetToken returns the token whose secret hashes to hash, revoked or
	// not, or ErrNotFound.
	GetToken(ctx context.Context, hash string) (Token, error)

	// ListActors returns the actors that have auto instances (what a
	// rollback removes), in byte order, those after after ("" from the
	// first), at most limit. It reads one index entry per actor, not one
	// per instance.
	ListActors(ctx context.Context, after string, limit int) ([]string, error)
	// CountInstances counts instance collections, those of actor when it
	// is not empty: what Verify checks.
	CountInstances(ctx context.Context, actor string) (int64, error)

	// SchemaVersion returns the version the store's schema is at and the
	// newest version this build knows: a server is ready only when they
	// are equal.
	SchemaVersion(ctx context.Context) (current, known int64, err error)
}

// PoolStats describes a store's connections, for metrics.
type PoolStats struct {
	MaxOpen      int           // the most connections the pool may open
	Open         int           // connections open now
	InUse        int           // of which in use
	Idle         int           // of which idle
	WaitCount    int64         // how many times a caller waited for a connection
	WaitDuration time.Duration // how long callers waited in all
}

// Mode says how an instance was made.
type Mode string

const (
	ModeAuto   Mode = "auto"
	ModeManual Mode = "manual"
)

// LogEntry is a row of iu_auto_instantiate_event_log.
type LogEntry struct {
	Seq            int64  `json:"-"` // the log's order, for paging
	IdempotencyKey string `json:"idempotency_key"`
	EventID        string `json:"event_id"`
	EventType      string `json:"event_type"`
	EventSource    string `json:"event_source"`
	TemplateKey    string `json:"template_key"`
	InstanceKey    string `json:"instance_key"`
	Actor          string `json:"actor"`
	Status         Status `json:"status"`
	PayloadDigest  Digest `json:"payload_digest"`
	CreatedAt      Time   `json:"created_at"`
}

// Instance is an instance collection with its lineage: one to store, or
// one read back. Slots is the template's own graph, shared, not copied.
type Instance struct {
	Key            string
	Title          string
	TemplateKey    string
	TemplateDigest Digest // the template's digest at instantiation (lineage)
	Digest         Digest // the instance's own
	Actor          string
	Mode           Mode
	Event          *Event // nil for manual compositions
	Slots          []Slot
	CreatedAt      Time
}

// InstanceGraph is what verify reads of one instance.
type InstanceGraph struct {
	Key            string
	Actor          string
	Digest         Digest // as stored on the collection
	HasLineage     bool   // a lineage row names the collection's id
	LineageKeyOK   bool   // and the collection's key
	TemplateKey    string
	TemplateDigest Digest // as recorded in lineage
	Slots          []Slot // from the membership rows with the collection's key
	// Strays counts the membership rows under the collection's id that
	// name another key: they are not the instance's.
	Strays int64
}

// GraphRowCounts is what verify counts across the whole store besides the
// rows it reaches from the collections: the rows of the membership and
// lineage tables, and the ok log rows whose instance is missing.
type GraphRowCounts struct {
	Memberships   int64
	Lineage       int64
	OrphanLogRows int64
}

// Surfaces counts the three surfaces of a bulk run.
type Surfaces struct {
	EventLog  int64 `json:"event_log"`
	Lineage   int64 `json:"lineage"`
	Instances int64 `json:"instances"`
}

// InstanceFilter selects rows of the per-instance view, a page at a time.
// Zero fields do not filter. Rows come in creation order, except under a
// Prefix: then in key order, which the key index serves at any size (in
// creation order, the first page under a prefix whose instances are the
// newest read every older one first).
type InstanceFilter struct {
	Actor       string
	TemplateKey string
	Prefix      string // instance prefix: keys under AutoInstancePrefix(Prefix)
	EventID     string
	// AfterKey is where a page under a Prefix starts: the rows whose keys
	// sort after it ("" from the first). The engine sets it from the
	// page's cursor.
	AfterKey string `json:"-"`
	PageRequest
}

// EventFilter selects entries of the event log, a page at a time, newest
// first. Zero fields do not filter.
type EventFilter struct {
	Status Status
	Actor  string
	PageRequest
}

// InstanceRow is a row of view iu_auto_instantiate_instances.
type InstanceRow struct {
	Seq            int64  `json:"-"` // creation order, for paging
	InstanceKey    string `json:"instance_key"`
	TemplateKey    string `json:"template_key"`
	EventID        string `json:"event_id"`
	EventType      string `json:"event_type"`
	EventSource    string `json:"event_source"`
	Actor          string `json:"actor"`
	CreatedAt      Time   `json:"created_at"`
	TemplateDigest Digest `json:"template_digest"`
	InstanceDigest Digest `json:"instance_digest"`
	DigestMatch    bool   `json:"digest_match"`
}

// TemplateStat is a row of view iu_auto_instantiate_template_summary.
type TemplateStat struct {
	TemplateKey       string   `json:"template_collection_key"`
	EmitMode          EmitMode `json:"emit_mode"`
	InstanceCount     int64    `json:"instance_count"`
	InstancesLastHour int64    `json:"instances_last_hour"`
}

// RollbackCounts is what a rollback deletes (or would delete).
type RollbackCounts struct {
	LogRows     int64 `json:"log_rows"`
	LineageRows int64 `json:"lineage_rows"`
	Instances   int64 `json:"instances"`
	Memberships int64 `json:"memberships"`
}

// Orphans counts rows that point at something missing; all zero in a
// healthy store.
type Orphans struct {
	Memberships int64 `json:"memberships"` // membership rows without their collection or piece
	Lineage     int64 `json:"lineage"`     // lineage rows without their instance
	EventLog    int64 `json:"event_log"`   // ok log rows without their instance
	Instances   int64 `json:"instances"`   // instance collections without lineage
}

// Total returns the number of orphan rows of every kind.
func (o Orphans) Total() int64 { return o.Memberships + o.Lineage + o.EventLog + o.Instances }

// EdgesText is how every store writes a slot's edges in the after_slots
// column of iu_collection_membership: the ids of the slots it comes after,
// separated by single spaces (slot ids contain no space).
func EdgesText(after []string) string { return strings.Join(after, " ") }

// ParseEdgesText reads an after_slots column back.
func ParseEdgesText(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Fields(s)
}

// KeyPrefixEnd returns the smallest string greater than every string that
// starts with p, so that "key >= p AND key < KeyPrefixEnd(p)" selects the
// keys under a prefix as an index range (keys compare bytewise).
func KeyPrefixEnd(p string) string {
	b := []byte(p)
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] < 0xff {
			b[i]++
			return string(b[:i+1])
		}
	}
	return "\xff\xff\xff\xff"
}

// KeyRange is a range of instance keys that an index serves: the keys
// above From (or equal to it, with FromIncluded) and below To.
type KeyRange struct {
	From         string
	FromIncluded bool
	To           string
}

// PrefixRange is the range of the instance keys under an instance prefix
// (the keys AutoInstancePrefix(prefix) starts), those after the key after
// when it is in the range.
func PrefixRange(prefix, after string) KeyRange {
	p := AutoInstancePrefix(prefix)
	if after >= p {
		return KeyRange{From: after, To: KeyPrefixEnd(p)}
	}
	return KeyRange{From: p, FromIncluded: true, To: KeyPrefixEnd(p)}
}

// FromOp is the comparison of the range's lower bound: ">=" or ">".
func (r KeyRange) FromOp() string {
	if r.FromIncluded {
		return ">="
	}
	return ">"
}

// A store reads an instance's membership rows for verify folded into one
// string, which it builds in SQL: each row is slot, piece id and edges
// (EdgesText) joined by FoldField, the rows, in byte order of slot, joined
// by FoldRow. Neither byte occurs in slot ids, piece ids or edges.
const (
	FoldField = "\x1f"
	FoldRow   = "\x1e"
)

// SlotUnfolder parses folded membership rows. The instances of one template
// fold to the same string, so it parses each string once (up to a bound)
// and hands out the same slots, which verify then checks once.
type SlotUnfolder struct{ parsed map[string][]Slot }

// Unfold parses folded. A malformed piece id parses as the zero digest,
// which verify reports.
func (u *SlotUnfolder) Unfold(folded string) []Slot {
	if slots, ok := u.parsed[folded]; ok {
		return slots
	}
	var out []Slot
	if folded != "" {
		rows := strings.Split(folded, FoldRow)
		out = make([]Slot, 0, len(rows))
		for _, r := range rows {
			f := strings.SplitN(r, FoldField, 3)
			for len(f) < 3 {
				f = append(f, "")
			}
			s := Slot{ID: f[0], After: ParseEdgesText(f[2])}
			s.Piece, _ = ParseDigest(f[1])
			out = append(out, s)
		}
	}
	if u.parsed == nil {
		u.parsed = make(map[string][]Slot)
	}
	if len(u.parsed) < 10000 {
		u.parsed[folded] = out
	}
	return out
}
