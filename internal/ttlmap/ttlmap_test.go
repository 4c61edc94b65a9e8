package ttlmap

import (
	"strconv"
	"sync"
	"testing"
	"time"
)

var t0 = time.Unix(1_700_000_000, 0)

// deadline is a Map of string to expiry time: an entry expires at its value.
func deadline(shards, perShard, lowWater int) *Map[string, time.Time] {
	return New(Config[string, time.Time]{
		Shards: shards, PerShard: perShard, LowWater: lowWater,
		Expired: func(until, now time.Time) bool { return !now.Before(until) },
	})
}

func TestGetExpires(t *testing.T) {
	m := deadline(4, 8, 0)
	m.Put("a", t0.Add(time.Second), t0)
	if v, ok := m.Get("a", t0); !ok || !v.Equal(t0.Add(time.Second)) {
		t.Fatalf("Get before expiry = %v, %v", v, ok)
	}
	if _, ok := m.Get("a", t0.Add(time.Second)); ok {
		t.Fatal("an expired entry was served")
	}
	if n := m.Len(); n != 0 {
		t.Fatalf("Get left an expired entry behind: Len %d", n)
	}
	if _, ok := m.Get("never", t0); ok {
		t.Fatal("an absent key was found")
	}
}

func TestDoOps(t *testing.T) {
	m := deadline(4, 8, 0)
	m.Do("a", t0, func(v time.Time, ok bool) (time.Time, Op) {
		if ok {
			t.Error("absent key reported present")
		}
		return t0, Keep
	})
	if m.Len() != 0 {
		t.Fatal("Keep on an absent key inserted it")
	}
	m.Do("a", t0, func(time.Time, bool) (time.Time, Op) { return t0.Add(time.Minute), Store })
	m.Do("a", t0, func(v time.Time, ok bool) (time.Time, Op) {
		if !ok || !v.Equal(t0.Add(time.Minute)) {
			t.Errorf("stored value not seen: %v %v", v, ok)
		}
		return t0, Keep // not stored: Keep
	})
	if v, ok := m.Get("a", t0); !ok || !v.Equal(t0.Add(time.Minute)) {
		t.Fatalf("Keep stored a change to the value: %v %v", v, ok)
	}
	m.Do("a", t0, func(v time.Time, _ bool) (time.Time, Op) { return v, Delete })
	if m.Len() != 0 {
		t.Fatal("Delete left the entry")
	}
	m.Do("a", t0, func(v time.Time, _ bool) (time.Time, Op) { return v, Delete }) // absent: nothing to do
}

// TestSweep: Sweep removes exactly the expired entries, calls OnEvict for
// each with the entry's shard, and Delete does not call it.
func TestSweep(t *testing.T) {
	evicted := map[string]int{}
	var m *Map[string, time.Time]
	m = New(Config[string, time.Time]{
		Shards: 8, PerShard: 100,
		Expired: func(until, now time.Time) bool { return !now.Before(until) },
		OnEvict: func(shard int, k string, _ time.Time) {
			if shard != m.Shard(k) {
				t.Errorf("OnEvict(%s) with shard %d, key lives in %d", k, shard, m.Shard(k))
			}
			evicted[k]++
		},
	})
	for i := range 50 {
		m.Put("k"+strconv.Itoa(i), t0.Add(time.Duration(i)*time.Second), t0)
	}
	m.Do("k49", t0, func(v time.Time, _ bool) (time.Time, Op) { return v, Delete })
	if n := m.Sweep(t0.Add(10 * time.Second)); n != 11 {
		t.Fatalf("swept %d, want 11 (k0..k10: an entry expires at its deadline)", n)
	}
	if m.Len() != 38 || len(evicted) != 11 || evicted["k10"] != 1 || evicted["k11"] != 0 || evicted["k49"] != 0 {
		t.Fatalf("Len %d, evicted %v", m.Len(), evicted)
	}
}

// TestBoundUnderFlood: a flood of distinct live keys never grows a shard
// past PerShard; expired entries go before live ones; the LowWater mark
// sets how many live entries one full shard drops at once.
func TestBoundUnderFlood(t *testing.T) {
	const shards, per = 4, 64
	for _, tc := range []struct {
		name     string
		lowWater int
		after    int // entries in a full shard right after one more insert
	}{
		{"drop one", 0, per},
		{"drop an eighth", per * 7 / 8, per*7/8 + 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := deadline(shards, per, tc.lowWater)
			live := t0.Add(time.Hour)
			for i := range 100_000 {
				m.Put("flood"+strconv.Itoa(i), live, t0)
				for s := range shards {
					if n := m.ShardLen(s); n > per {
						t.Fatalf("after %d keys shard %d holds %d, bound %d", i+1, s, n, per)
					}
				}
			}
			if n := m.Len(); n > shards*per {
				t.Fatalf("Len %d past the bound %d", n, shards*per)
			}
			// Fill shard 0, then insert one more key there: the
			// LowWater mark decides how many live entries go.
			for i := 0; m.ShardLen(0) < per; i++ {
				if k := "fill" + strconv.Itoa(i); m.Shard(k) == 0 {
					m.Put(k, live, t0)
				}
			}
			for i := 0; ; i++ {
				if k := "one" + strconv.Itoa(i); m.Shard(k) == 0 {
					m.Put(k, live, t0)
					break
				}
			}
			if n := m.ShardLen(0); n != tc.after {
				t.Fatalf("a full shard holds %d after one insert, want %d", n, tc.after)
			}
		})
	}
	t.Run("expired first", func(t *testing.T) {
		m := deadline(1, 8, 0)
		for i := range 7 {
			m.Put("live"+strconv.Itoa(i), t0.Add(time.Hour), t0)
		}
		m.Put("old", t0.Add(time.Second), t0)
		m.Put("new", t0.Add(time.Hour), t0.Add(time.Minute))
		if _, ok := m.Get("old", t0); ok {
			t.Fatal("the expired entry survived while a live one could have gone")
		}
		for i := range 7 {
			if _, ok := m.Get("live"+strconv.Itoa(i), t0); !ok {
				t.Fatalf("live%d dropped though an expired entry made room", i)
			}
		}
		if m.Len() != 8 {
			t.Fatalf("Len %d, want 8", m.Len())
		}
	})
}

// TestNoRoomMadeWithoutStore: only storing a new key into a full shard makes
// room; updating a present key or declining to store drops nothing.
func TestNoRoomMadeWithoutStore(t *testing.T) {
	m := deadline(1, 4, 0)
	for i := range 4 {
		m.Put("k"+strconv.Itoa(i), t0.Add(time.Hour), t0)
	}
	m.Put("k0", t0.Add(2*time.Hour), t0)
	m.Do("absent", t0, func(v time.Time, _ bool) (time.Time, Op) { return v, Keep })
	if m.Len() != 4 {
		t.Fatalf("Len %d, want 4", m.Len())
	}
	for i := range 4 {
		if _, ok := m.Get("k"+strconv.Itoa(i), t0); !ok {
			t.Fatalf("k%d dropped without an insert", i)
		}
	}
}

// TestConcurrent hammers every method from several goroutines; run with
// -race. Counters kept through Do must not lose an update, and the bound
// must hold throughout.
func TestConcurrent(t *testing.T) {
	type counter struct{ n int }
	m := New(Config[int, *counter]{
		Shards: 8, PerShard: 1 << 10,
		Expired: func(c *counter, _ time.Time) bool { return c.n == 0 },
	})
	const workers, rounds = 8, 5000
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range rounds {
				m.Do(i%100, t0, func(c *counter, ok bool) (*counter, Op) {
					if !ok {
						c = &counter{}
					}
					c.n++
					return c, Store
				})
				switch i % 50 {
				case 0:
					m.Sweep(t0)
				case 1:
					m.Get(i%100, t0)
				case 2:
					m.Len()
				case 3:
					m.Put(1000+w*rounds+i, &counter{n: 1}, t0) // distinct keys, bounded
				}
			}
		})
	}
	wg.Wait()
	total := 0
	for k := range 100 {
		m.Locked(m.Shard(k), func() {})
		if c, ok := m.Get(k, t0); ok {
			total += c.n
		}
	}
	if total != workers*rounds {
		t.Fatalf("counters sum to %d, want %d: an update was lost", total, workers*rounds)
	}
	if n := m.Len(); n > 8<<10 {
		t.Fatalf("Len %d past the bound", n)
	}
}

func TestDefaultHashSpreads(t *testing.T) {
	m := deadline(16, 1000, 0)
	for i := range 1600 {
		m.Put("k"+strconv.Itoa(i), t0.Add(time.Hour), t0)
	}
	for s := range 16 {
		if n := m.ShardLen(s); n < 50 || n > 200 {
			t.Errorf("shard %d holds %d of 1600 keys: the default hash does not spread", s, n)
		}
	}
}

func TestNewPanicsOnBadConfig(t *testing.T) {
	for name, cfg := range map[string]Config[string, int]{
		"no shards": {PerShard: 1, Expired: func(int, time.Time) bool { return false }},
		"no bound":  {Shards: 1, Expired: func(int, time.Time) bool { return false }},
		"3 shards":  {Shards: 3, PerShard: 1, Expired: func(int, time.Time) bool { return false }},
		"no expiry": {Shards: 1, PerShard: 1},
	} {
		t.Run(name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Fatal("New accepted a Config it cannot work with")
				}
			}()
			New(cfg)
		})
	}
}
