package iu

// NewBulkEvent builds and checks one event of a bulk run from its parts,
// as ParseEventLine does from an NDJSON line: the HTTP API receives events
// with the place they came from (where) attached. An empty source is
// DefaultSource.
func NewBulkEvent(where, template string, ev Event) (BulkEvent, error) {
	l := bulkEventLine{Template: template, ID: ev.ID, Type: ev.Type, Source: ev.Source, Subject: ev.Subject, Time: ev.Time, Data: ev.Data}
	return l.event(where)
}
