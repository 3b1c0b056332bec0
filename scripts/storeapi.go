package scripts

import (
	"fmt"
	"time"

	lua "github.com/yuin/gopher-lua"
)

// kv is the script's durable store, opened at its first use.
func (s *Script) kv() (kvStore, error) {
	s.storeMu.Lock()
	defer s.storeMu.Unlock()
	if s.store != nil {
		return s.store, nil
	}
	keys, bytes := s.limits.StoreMaxKeys, s.limits.StoreMaxBytes
	if keys <= 0 {
		keys = defaultStoreKeys
	}
	if bytes <= 0 {
		bytes = defaultStoreBytes
	}
	if s.limits.StoreDir == "" {
		s.store = newMemStore(keys, bytes)
		return s.store, nil
	}
	db, err := acquireDB(s.limits.StoreDir)
	if err != nil {
		return nil, err
	}
	s.store = &boltStore{db: db, bucket: []byte(s.path), maxKeys: keys, maxBytes: bytes}
	return s.store, nil
}

// storeUpdate runs fn on key's record in the script's store (kvStore.update),
// raising a Lua error if the store fails.
func (v *vm) storeUpdate(L *lua.LState, key string, fn func(storeRec, bool) (storeRec, bool, error)) {
	kv, err := v.s.kv()
	if err != nil {
		L.RaiseError("store: %v", err)
	}
	evicted, err := kv.update(key, fn)
	if err != nil {
		L.RaiseError("%v", err)
	}
	if evicted > 0 {
		v.s.log.Warn("script store full: the oldest entries were dropped", "script", v.s.name, "count", evicted)
	}
}

// openStore gives the script store.get/set/add/delete and duplicate().
func (v *vm) openStore() {
	L := v.L
	update := v.storeUpdate
	expiry := func(L *lua.LState, n int) int64 {
		ttl := L.OptNumber(n, 0)
		if ttl < 0 {
			L.ArgError(n, "ttl_seconds must not be negative")
		}
		if ttl == 0 {
			return 0
		}
		return time.Now().Add(time.Duration(float64(ttl) * float64(time.Second))).UnixNano()
	}
	fns := map[string]lua.LGFunction{
		// store.get(key): the value, or nil (never set, deleted or expired).
		"get": func(L *lua.LState) int {
			key := L.CheckString(1)
			kv, err := v.s.kv()
			if err != nil {
				L.RaiseError("store: %v", err)
			}
			r, ok, err := kv.view(key)
			if err != nil {
				L.RaiseError("store: %v", err)
			}
			if ok {
				L.Push(toLua(r.V))
			} else {
				L.Push(lua.LNil)
			}
			return 1
		},
		// store.set(key, value [, ttl_seconds]); a nil value deletes.
		"set": func(L *lua.LState) int {
			key := L.CheckString(1)
			val := L.Get(2)
			if val == lua.LNil {
				update(L, key, func(storeRec, bool) (storeRec, bool, error) { return storeRec{}, true, nil })
				return 0
			}
			gv, err := fromLua(val)
			if err != nil {
				L.ArgError(2, err.Error())
			}
			exp := expiry(L, 3)
			update(L, key, func(storeRec, bool) (storeRec, bool, error) {
				return storeRec{V: gv, Exp: exp, At: time.Now().UnixNano()}, false, nil
			})
			return 0
		},
		// store.add(key, n [, ttl_seconds]): adds n (default 1) atomically,
		// returns the sum; the ttl, if given, starts again.
		"add": func(L *lua.LState) int {
			key := L.CheckString(1)
			n := float64(L.OptNumber(2, 1))
			exp := expiry(L, 3)
			var sum float64
			update(L, key, func(r storeRec, ok bool) (storeRec, bool, error) {
				old, _ := r.V.(float64)
				if ok && r.V != nil {
					if _, isNum := r.V.(float64); !isNum {
						return r, false, fmt.Errorf("store.add: %q holds a %T, not a number", key, r.V)
					}
				}
				sum = old + n
				if exp == 0 && ok {
					exp = r.Exp
				}
				return storeRec{V: sum, Exp: exp, At: time.Now().UnixNano()}, false, nil
			})
			L.Push(lua.LNumber(sum))
			return 1
		},
		"delete": func(L *lua.LState) int {
			key := L.CheckString(1)
			update(L, key, func(storeRec, bool) (storeRec, bool, error) { return storeRec{}, true, nil })
			return 0
		},
	}
	store := L.NewTable()
	for name, fn := range fns {
		store.RawSetString(name, L.NewFunction(fn))
	}
	L.SetGlobal("store", store)

	// duplicate{key=..., seconds=...} (RFC 7352): true if another message
	// with this key (default: the Message-ID) was seen within seconds
	// (default 7 days). The key is recorded with the message that set it,
	// so the same message filtered again (a retry after a delivery failed
	// for now) is not its own duplicate.
	L.SetGlobal("duplicate", L.NewFunction(func(L *lua.LState) int {
		m := v.cur.m
		if m == nil {
			L.RaiseError("duplicate() is for filter(msg), while a message is filtered")
		}
		key, seconds := m.MessageID(), 7*24*3600.0
		if t, ok := L.Get(1).(*lua.LTable); ok {
			if k, ok := t.RawGetString("key").(lua.LString); ok {
				key = string(k)
			}
			if s, ok := t.RawGetString("seconds").(lua.LNumber); ok && s > 0 {
				seconds = float64(s)
			}
		}
		if key == "" {
			L.Push(lua.LFalse) // RFC 7352 3: no Message-ID, no duplicate
			return 1
		}
		self := m.Key()
		dup := false
		update(L, "\x00duplicate\x00"+key, func(r storeRec, ok bool) (storeRec, bool, error) {
			if ok && r.V != self {
				dup = true
				return r, false, nil // the first one's record stands
			}
			return storeRec{V: self, Exp: time.Now().Add(time.Duration(seconds * float64(time.Second))).UnixNano(), At: time.Now().UnixNano()}, false, nil
		})
		L.Push(lua.LBool(dup))
		return 1
	}))
}

// fromLua turns a stored Lua value into Go: strings, numbers, booleans.
func fromLua(v lua.LValue) (any, error) {
	switch v := v.(type) {
	case lua.LString:
		return string(v), nil
	case lua.LNumber:
		return float64(v), nil
	case lua.LBool:
		return bool(v), nil
	}
	return nil, fmt.Errorf("the store holds strings, numbers and booleans, not a %s", v.Type())
}

func toLua(v any) lua.LValue {
	switch v := v.(type) {
	case string:
		return lua.LString(v)
	case float64:
		return lua.LNumber(v)
	case bool:
		return lua.LBool(v)
	}
	return lua.LNil
}
