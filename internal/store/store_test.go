package store

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/tollgate-dev/tollgate/config"
	"github.com/tollgate-dev/tollgate/internal/testrig"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func TestKeysCarryPrefixAndHashTag(t *testing.T) {
	k := Keys{Prefix: "tg:"}
	for _, c := range []struct{ got, want string }{
		{k.Customer("cus_123", "state"), "tg:{cus_123}:state"},
		{k.Customer("cus_123", "usage", "api_calls"), "tg:{cus_123}:usage:api_calls"},
		{k.Customer("cus_123"), "tg:{cus_123}"},
		{k.Global("lease", "batcher"), "tg:lease:batcher"},
	} {
		if c.got != c.want {
			t.Errorf("key = %q; want %q", c.got, c.want)
		}
	}
	// Redis Cluster hashes only the tag, so one customer's keys share a slot.
	if hashSlot(k.Customer("cus_9", "state")) != hashSlot(k.Customer("cus_9", "usage", "x")) {
		t.Error("two keys of one customer land in different Cluster slots")
	}
	if hashSlot(k.Customer("cus_9", "state")) == hashSlot(k.Customer("cus_10", "state")) &&
		hashSlot(k.Customer("cus_9", "state")) == hashSlot(k.Customer("cus_11", "state")) {
		t.Error("different customers all share one slot: the tag is not per customer")
	}
}

func TestOpenRealRedisAndEmbedded(t *testing.T) {
	rd := testrig.StartRedis(t)
	for _, c := range []struct {
		name     string
		cfg      config.Redis
		embedded bool
	}{
		{"url", config.Redis{URL: rd.URL(), Prefix: "t:"}, false},
		{"addrs", config.Redis{Addrs: []string{rd.Addr()}, Prefix: "t:"}, false},
		{"embedded", config.Redis{Prefix: "t:"}, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			s, err := Open(c.cfg, quiet)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if s.Embedded() != c.embedded {
				t.Errorf("Embedded() = %v; want %v", s.Embedded(), c.embedded)
			}
			ctx := context.Background()
			if err := s.Ping(ctx); err != nil {
				t.Fatalf("Ping: %v", err)
			}
			key := s.Keys.Customer("cus_open_"+c.name, "probe")
			if err := s.Client.Set(ctx, key, "v", 0).Err(); err != nil {
				t.Fatal(err)
			}
			if !c.embedded {
				if got, _ := rd.Client().Get(ctx, key).Result(); got != "v" {
					t.Errorf("value written through Open not in the real redis: %q", got)
				}
			}
		})
	}
}

// A cluster reached through one address (redis.cluster: true) gets a
// Cluster client, which follows MOVED to every node.
func TestOpenClusterByOneAddress(t *testing.T) {
	cl := testrig.StartRedisCluster(t, 3)
	for _, c := range []struct {
		name string
		cfg  config.Redis
	}{
		{"every node", config.Redis{Addrs: cl.Addrs(), Prefix: "t:"}},
		{"one address, cluster: true", config.Redis{Addrs: cl.Addrs()[:1], Cluster: true, Prefix: "t:"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			s, err := Open(c.cfg, quiet)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if _, ok := s.Client.(*redis.ClusterClient); !ok {
				t.Fatalf("client is %T; want *redis.ClusterClient", s.Client)
			}
			ctx := context.Background()
			for i := range 20 { // customers spread over every node
				key := s.Keys.Customer(fmt.Sprintf("cus_%d", i), "probe")
				if err := s.Client.Set(ctx, key, "v", 0).Err(); err != nil {
					t.Fatalf("SET %s: %v", key, err)
				}
			}
		})
	}
}

func TestOpenRejectsBadURL(t *testing.T) {
	if _, err := Open(config.Redis{URL: "redis://:bad:port:x/zz"}, quiet); err == nil {
		t.Error("Open with a malformed URL = nil error")
	}
}

// hashSlot is Redis Cluster's key slot (CRC16/XMODEM of the hash tag, mod
// 16384), written out so the test does not trust the code under test.
func hashSlot(key string) int {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			key = key[i+1 : i+1+j]
		}
	}
	var crc uint16
	for k := 0; k < len(key); k++ {
		crc ^= uint16(key[k]) << 8
		for b := 0; b < 8; b++ {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return int(crc) % 16384
}

// The embedded store expires keys on the wall clock like Redis: leases and
// locks taken with a TTL must free themselves.
func TestEmbeddedStoreExpiresKeys(t *testing.T) {
	s, err := Open(config.Redis{Prefix: "t:"}, quiet)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	if err := s.Client.Set(ctx, "t:lease", "me", 50*time.Millisecond).Err(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for s.Client.Exists(ctx, "t:lease").Val() == 1 {
		if time.Now().After(deadline) {
			t.Fatal("a key with a 50ms TTL still exists after 5s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Issue 12 review: with redis.url set, redis.password was ignored (the
// URL's empty password won), so a deployment keeping the password in
// ${REDIS_PASSWORD} beside a plain URL got NOAUTH on every command.
func TestOpenURLTakesPasswordFromConfig(t *testing.T) {
	rd := testrig.StartRedis(t, testrig.WithoutPersistence())
	ctx := context.Background()
	if err := rd.Client().ConfigSet(ctx, "requirepass", "s3cret-pass").Err(); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name    string
		cfg     config.Redis
		wantErr bool
	}{
		{"url and password", config.Redis{URL: rd.URL(), Password: "s3cret-pass"}, false},
		{"password in the url", config.Redis{URL: "redis://:s3cret-pass@" + rd.Addr() + "/0"}, false},
		{"no password", config.Redis{URL: rd.URL()}, true},
	} {
		s, err := Open(c.cfg, quiet)
		if err != nil {
			t.Fatalf("%s: Open: %v", c.name, err)
		}
		err = s.Ping(ctx)
		s.Close()
		if (err != nil) != c.wantErr {
			t.Errorf("%s: Ping = %v; want error %v", c.name, err, c.wantErr)
		}
	}
}
