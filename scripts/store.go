package scripts

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
)

// The durable store: each script's keys and values, kept in
// state_dir/scripts.db (bbolt) so that they survive a reload and a restart
// (duplicate detection, "reply once per sender"). One bucket per script,
// named by its path; bounded in keys and bytes, the oldest entries going
// first when full. The file is opened at the first use, not at load: "mailflow
// check" does no I/O, and "mailflow test" keeps its store in memory.

// storeRec is one stored value.
type storeRec struct {
	V   any   `json:"v"`             // a string, a number or a boolean
	Exp int64 `json:"exp,omitempty"` // UnixNano after which it is gone; 0: never
	At  int64 `json:"at"`            // UnixNano when it was set: the oldest go first
}

func (r storeRec) live(now time.Time) bool { return r.Exp == 0 || now.UnixNano() < r.Exp }

// kvStore is a script's store.
type kvStore interface {
	// view returns key's live record, without writing.
	view(key string) (storeRec, bool, error)
	// update runs fn on key's live record (ok false: none) and stores what
	// it returns, atomically; del true removes the key instead.
	update(key string, fn func(rec storeRec, ok bool) (out storeRec, del bool, err error)) (evicted int, err error)
	close() error
}

const (
	defaultStoreKeys  = 100_000
	defaultStoreBytes = 16 << 20
)

// memStore keeps a store in memory ("mailflow test", or no state_dir).
type memStore struct {
	mu       sync.Mutex
	recs     map[string]storeRec
	maxKeys  int
	maxBytes int64
	bytes    int64
}

func newMemStore(maxKeys int, maxBytes int64) *memStore {
	return &memStore{recs: map[string]storeRec{}, maxKeys: maxKeys, maxBytes: maxBytes}
}

func recSize(key string, r storeRec) int64 {
	b, _ := json.Marshal(r)
	return int64(len(key) + len(b))
}

func (m *memStore) update(key string, fn func(storeRec, bool) (storeRec, bool, error)) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := time.Now()
	old, ok := m.recs[key]
	if ok && !old.live(now) {
		ok = false
	}
	out, del, err := fn(old, ok)
	if err != nil {
		return 0, err
	}
	if prev, had := m.recs[key]; had {
		m.bytes -= recSize(key, prev)
		delete(m.recs, key)
	}
	if del {
		return 0, nil
	}
	size := recSize(key, out)
	if size > m.maxBytes {
		return 0, fmt.Errorf("store: %q with its value is %d bytes, more than the store holds (%d)", key, size, m.maxBytes)
	}
	evicted := 0
	for len(m.recs) >= m.maxKeys || m.bytes+size > m.maxBytes {
		oldest, at := "", int64(0)
		for k, r := range m.recs {
			if !r.live(now) {
				oldest = k
				break
			}
			if oldest == "" || r.At < at {
				oldest, at = k, r.At
			}
		}
		m.bytes -= recSize(oldest, m.recs[oldest])
		delete(m.recs, oldest)
		evicted++
	}
	m.recs[key] = out
	m.bytes += size
	return evicted, nil
}

func (m *memStore) close() error { return nil }

func (m *memStore) view(key string) (storeRec, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.recs[key]
	return r, ok && r.live(time.Now()), nil
}

// boltStore is a script's bucket in the shared scripts.db.
type boltStore struct {
	db       *sharedDB
	bucket   []byte
	maxKeys  int
	maxBytes int64
}

// Buckets inside a script's bucket: the records by key, the keys by the
// time they were set (8-byte big-endian UnixNano, then the key: the
// oldest first), and the counts.
var (
	keysBucket = []byte("k")
	ageBucket  = []byte("t")
	metaKey    = []byte("n") // 16 bytes: keys, bytes
)

func ageKey(at int64, key string) []byte {
	b := make([]byte, 8+len(key))
	binary.BigEndian.PutUint64(b, uint64(at))
	copy(b[8:], key)
	return b
}

func (s *boltStore) update(key string, fn func(storeRec, bool) (storeRec, bool, error)) (int, error) {
	evicted := 0
	err := s.db.db.Update(func(tx *bolt.Tx) error {
		root, err := tx.CreateBucketIfNotExists(s.bucket)
		if err != nil {
			return err
		}
		keys, err := root.CreateBucketIfNotExists(keysBucket)
		if err != nil {
			return err
		}
		ages, err := root.CreateBucketIfNotExists(ageBucket)
		if err != nil {
			return err
		}
		var n, size int64
		if m := root.Get(metaKey); len(m) == 16 {
			n, size = int64(binary.BigEndian.Uint64(m)), int64(binary.BigEndian.Uint64(m[8:]))
		}
		remove := func(k []byte) error {
			raw := keys.Get(k)
			if raw == nil {
				return nil
			}
			var r storeRec
			_ = json.Unmarshal(raw, &r)
			n--
			size -= int64(len(k) + len(raw))
			if err := ages.Delete(ageKey(r.At, string(k))); err != nil {
				return err
			}
			return keys.Delete(k)
		}
		now := time.Now()
		var old storeRec
		ok := false
		if raw := keys.Get([]byte(key)); raw != nil && json.Unmarshal(raw, &old) == nil && old.live(now) {
			ok = true
		}
		out, del, err := fn(old, ok)
		if err != nil {
			return err
		}
		if err := remove([]byte(key)); err != nil {
			return err
		}
		if !del {
			raw, err := json.Marshal(out)
			if err != nil {
				return err
			}
			need := int64(len(key) + len(raw))
			if need > s.maxBytes {
				return fmt.Errorf("store: %q with its value is %d bytes, more than the store holds (%d)", key, need, s.maxBytes)
			}
			for n >= int64(s.maxKeys) || size+need > s.maxBytes {
				k, _ := ages.Cursor().First()
				if k == nil {
					break
				}
				if err := remove(k[8:]); err != nil {
					return err
				}
				evicted++
			}
			if err := keys.Put([]byte(key), raw); err != nil {
				return err
			}
			if err := ages.Put(ageKey(out.At, key), nil); err != nil {
				return err
			}
			n++
			size += need
		}
		meta := make([]byte, 16)
		binary.BigEndian.PutUint64(meta, uint64(n))
		binary.BigEndian.PutUint64(meta[8:], uint64(size))
		return root.Put(metaKey, meta)
	})
	return evicted, err
}

func (s *boltStore) close() error { return s.db.release() }

func (s *boltStore) view(key string) (storeRec, bool, error) {
	var r storeRec
	ok := false
	err := s.db.db.View(func(tx *bolt.Tx) error {
		root := tx.Bucket(s.bucket)
		if root == nil || root.Bucket(keysBucket) == nil {
			return nil
		}
		raw := root.Bucket(keysBucket).Get([]byte(key))
		if raw != nil && json.Unmarshal(raw, &r) == nil {
			ok = r.live(time.Now())
		}
		return nil
	})
	return r, ok, err
}

// sharedDB is scripts.db, opened once per process however many scripts
// (and generations of them, across reloads) use it: bbolt locks its file.
type sharedDB struct {
	path string
	db   *bolt.DB
	refs int
}

var openDBs = struct {
	sync.Mutex
	byPath map[string]*sharedDB
}{byPath: map[string]*sharedDB{}}

func acquireDB(dir string) (*sharedDB, error) {
	path := filepath.Join(dir, "scripts.db")
	openDBs.Lock()
	defer openDBs.Unlock()
	if d := openDBs.byPath[path]; d != nil {
		d.refs++
		return d, nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		if errors.Is(err, bolt.ErrTimeout) {
			return nil, fmt.Errorf("%s is in use by another mailflow", path)
		}
		return nil, err
	}
	d := &sharedDB{path: path, db: db, refs: 1}
	openDBs.byPath[path] = d
	return d, nil
}

func (d *sharedDB) release() error {
	openDBs.Lock()
	defer openDBs.Unlock()
	d.refs--
	if d.refs > 0 {
		return nil
	}
	delete(openDBs.byPath, d.path)
	return d.db.Close()
}
