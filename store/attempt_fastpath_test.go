package store

import (
	"bytes"
	"encoding/binary"
	"hash/fnv"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

// compactWebhookIDSlow is the compact form's test by webhookIDEncoding
// itself: decode, then encode again and compare.
func compactWebhookIDSlow(w string) ([16]byte, bool) {
	var raw [16]byte
	if len(w) != 30 || w[:4] != "msg_" {
		return raw, false
	}
	n, err := webhookIDEncoding.Decode(raw[:], []byte(w[4:]))
	if err != nil || n != 16 || webhookIDEncoding.EncodeToString(raw[:]) != w[4:] {
		return [16]byte{}, false
	}
	return raw, true
}

func TestCompactWebhookIDMatchesBase32(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var ids []string
	for range 2000 {
		var raw [16]byte
		for i := range raw {
			raw[i] = byte(rng.Uint32())
		}
		id := []byte("msg_" + webhookIDEncoding.EncodeToString(raw[:]))
		ids = append(ids, string(id))
		// One character changed to any byte: outside the alphabet, upper
		// case, another letter, or (the last one) trailing bits set.
		i := 4 + rng.IntN(26)
		id[i] = byte(rng.IntN(256))
		ids = append(ids, string(id))
		last := append([]byte(nil), ids[len(ids)-2]...)
		last[29] = "abcdefghijklmnopqrstuvwxyz234567"[rng.IntN(32)]
		ids = append(ids, string(last))
	}
	ids = append(ids, "", "msg_", "msg_aaaaaaaaaaaaaaaaaaaaaaaaaa", "msg_77777777777777777777777774", "msg_77777777777777777777777777",
		"MSG_aaaaaaaaaaaaaaaaaaaaaaaaaa", "msg_aaaaaaaaaaaaaaaaaaaaaaaaa", "msg_aaaaaaaaaaaaaaaaaaaaaaaaaaa", "msg_AAAAAAAAAAAAAAAAAAAAAAAAAA",
		"msg_aaaaaaaaaaaaaaaaaaaaaaaaa=", "msg_0123456789abcdef0123456789", "ord_aaaaaaaaaaaaaaaaaaaaaaaaaa")
	compact := 0
	for _, id := range ids {
		fast, okFast := compactWebhookID(id)
		slow, okSlow := compactWebhookIDSlow(id)
		if okFast != okSlow || okFast && fast != slow {
			t.Fatalf("%q: compactWebhookID = %x, %v; base32 = %x, %v", id, fast, okFast, slow, okSlow)
		}
		if okFast {
			compact++
		}
	}
	if compact < 2000 || compact == len(ids) {
		t.Fatalf("%d of %d ids compact: the cases do not cover both answers", compact, len(ids))
	}
}

// fnvReference is the key summary's hash as its format states it, with the
// standard library's FNV-1a: FNV-1a 64 of data, finished by fmix64.
func fnvReference(data []byte) uint64 {
	h := fnv.New64a()
	h.Write(data)
	x := h.Sum64()
	x ^= x >> 33
	x *= 0xff51afd7ed558ccd
	x ^= x >> 33
	x *= 0xc4ceb9fe1a85ec53
	x ^= x >> 33
	return x
}

func TestSummaryHashesMatchFNVReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for range 500 {
		var raw [16]byte
		for i := range raw {
			raw[i] = byte(rng.Uint32())
		}
		id := "msg_" + webhookIDEncoding.EncodeToString(raw[:])
		if got, want := summaryWebhookHash(id), fnvReference(append([]byte{'w'}, id...)); got != want {
			t.Fatalf("summaryWebhookHash(%q) = %x, want %x", id, got, want)
		}
		var oid bson.ObjectID
		for i := range oid {
			oid[i] = byte(rng.Uint32())
		}
		key := bsoncore.BuildDocumentFromElements(nil, bsoncore.AppendObjectIDElement(nil, "_id", oid))
		canon := append([]byte{'d'}, "_id\x00"...)
		canon = append(append(append(canon, byte(bsoncore.TypeObjectID)), oid[:]...), canonEnd)
		if got, want := summaryKeyHash(bson.Raw(key)), fnvReference(canon); got != want {
			t.Fatalf("summaryKeyHash(%v) = %x, want %x", bson.Raw(key), got, want)
		}
		n := rng.Int64()
		key = bsoncore.BuildDocumentFromElements(nil, bsoncore.AppendStringElement(nil, "k", "v"), bsoncore.AppendInt64Element(nil, "n", n))
		canon = append([]byte{'d'}, "k\x00"...)
		canon = append(append(canon, canonString), "v\x00"...)
		canon = append(append(canon, "n\x00"...), canonNumber)
		canon = binary.LittleEndian.AppendUint64(canon, canonicalFloatBits(float64(n)))
		canon = append(canon, canonEnd)
		if got, want := summaryKeyHash(bson.Raw(key)), fnvReference(canon); got != want {
			t.Fatalf("summaryKeyHash(%v) = %x, want %x", bson.Raw(key), got, want)
		}
	}
}

// TestBatchScratchMatchesAllocating checks that buckets cut and encoded in
// a reused batchScratch (InsertAttempts' way) encode exactly as buckets
// that allocate their own memory, batch after batch of varied shapes, and
// that reset leaves no reference to a batch's records.
func TestBatchScratchMatchesAllocating(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	sc := new(batchScratch)
	base := time.Date(2026, 12, 3, 7, 0, 0, 0, time.UTC)
	for round := range 40 {
		n := 1 + rng.IntN(1200)
		triggers := 1 + rng.IntN(4)
		if round%5 == 0 {
			triggers = 12 // more triggers than bucketsOf's linear search takes
		}
		recs := writerBatch(n)
		for i := range recs {
			recs[i].Trigger = "t" + string(rune('a'+rng.IntN(triggers)))
			recs[i].At = base.Add(time.Duration(rng.IntN(180_000)) * time.Millisecond) // some batches span buckets
			if rng.IntN(3) == 0 {
				recs[i].WebhookID = recs[rng.IntN(i+1)].WebhookID // repeated values
				recs[i].DocumentKey = recs[rng.IntN(i+1)].DocumentKey
			}
			if rng.IntN(50) == 0 {
				recs[i].Response = strings.Repeat("r", rng.IntN(MaxResponseSnippet))
			}
		}
		assignIDs(recs, base)
		var ids int
		newID := func(*AttemptRecord) bson.ObjectID {
			ids++
			return bson.ObjectID{byte(ids >> 8), byte(ids)}
		}
		plain := bucketsOf(recs, newID)
		var want [][]byte
		for i := range plain {
			raw, err := plain[i].MarshalBSON()
			if err != nil {
				t.Fatal(err)
			}
			want = append(want, raw)
		}
		ids = 0
		got := bucketsIn(sc, recs, newID)
		if len(got) != len(want) {
			t.Fatalf("round %d: %d buckets with scratch, %d without", round, len(got), len(want))
		}
		for i := range got {
			raw, err := got[i].MarshalBSON()
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(raw, want[i]) {
				t.Fatalf("round %d, bucket %d: the scratch encoding differs", round, i)
			}
		}
		sc.reset()
		for _, w := range sc.webhooks {
			if w != "" {
				t.Fatalf("round %d: reset kept a webhook-id", round)
			}
		}
		for _, k := range sc.keys {
			if k != nil {
				t.Fatalf("round %d: reset kept a document key", round)
			}
		}
		for _, b := range sc.buckets[:cap(sc.buckets)] {
			if b.Records != nil || b.WebhookIDs != nil || b.DocumentKeys != nil {
				t.Fatalf("round %d: reset kept a bucket's records", round)
			}
		}
	}
}
