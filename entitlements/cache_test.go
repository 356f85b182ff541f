package entitlements

import (
	"fmt"
	"testing"
)

func TestCacheIsBounded(t *testing.T) {
	c := newCache(100)
	for i := 0; i < 1000; i++ {
		c.put(fmt.Sprintf("cus_%d", i), &entry{})
	}
	if n := c.len(); n != 100 || len(c.keys()) != 100 {
		t.Errorf("cache of 100 holds %d (%d keys) after 1000 puts", n, len(c.keys()))
	}
	c.put("cus_known", &entry{})
	c.put("cus_known", &entry{}) // replacing is not growing
	if c.get("cus_known") == nil || c.len() != 100 {
		t.Fatalf("after put: cached=%v len=%d", c.get("cus_known") != nil, c.len())
	}
	c.remove("cus_known")
	c.remove("cus_known")
	if n := c.len(); n != 99 {
		t.Errorf("after removing one of 100: %d", n)
	}
}
