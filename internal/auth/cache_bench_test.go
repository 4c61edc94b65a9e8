package auth

import (
	"strconv"
	"testing"
	"time"

	"github.com/liveroom/liveroom/internal/protocol"
)

// BenchmarkTokenCacheHit measures the cache's hit path alone (shard lock,
// lookup, expiry check) from every CPU at once over 1,000 cached tokens; the
// SHA-256 of the token, which BenchmarkVerify/*/cached includes, is left out
// so that the map's own cost is not hidden by it.
func BenchmarkTokenCacheHit(b *testing.B) {
	c := newTokenCache(DefaultCacheSize)
	now := time.Now()
	keys := make([]cacheKey, 1000)
	for i := range keys {
		keys[i] = c.key("token-" + strconv.Itoa(i))
		c.put(keys[i], Identity{User: protocol.User("u" + strconv.Itoa(i)), Name: "U", Role: protocol.RoleViewer}, now.Add(time.Hour), now)
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			i++
			if _, ok := c.get(keys[i%len(keys)], now); !ok {
				b.Error("a cached token missed")
				return
			}
		}
	})
}
