package storage

import (
	"strconv"
	"testing"

	"github.com/changehook/changehook/internal/proccpu"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// BenchmarkInsertCommit inserts one document per storage transaction, as the
// delivery history writes its buckets, and reports the bytes of pages bbolt
// allocates per insert (what each commit writes), the write calls it makes
// (one per page allocation) and the time its node spill takes, besides the
// time and the process's CPU time per insert.
func BenchmarkInsertCommit(b *testing.B) {
	for _, size := range []int{200, 2 << 10, 5 << 10, 20 << 10} {
		b.Run(strconv.Itoa(size)+"B", func(b *testing.B) {
			e, err := Open(Options{Dir: b.TempDir()})
			if err != nil {
				b.Fatal(err)
			}
			defer e.Close()
			var c *Collection
			if err := e.Update(func(tx *Tx) error {
				c, err = tx.EnsureCollection("db", "attempts")
				return err
			}); err != nil {
				b.Fatal(err)
			}
			pad := make([]byte, size)
			for i := range pad {
				pad[i] = byte('a' + i%26)
			}
			insert := func(i int) {
				doc := bson.D{{Key: "_id", Value: bson.NewObjectID()}, {Key: "n", Value: int64(i)}, {Key: "pad", Value: bson.Binary{Data: pad}}}
				raw, err := bson.Marshal(doc)
				if err != nil {
					b.Fatal(err)
				}
				if err := e.Update(func(tx *Tx) error {
					_, err := tx.InsertRaw(c, raw)
					return err
				}); err != nil {
					b.Fatal(err)
				}
			}
			// Warm up past the first leaves, so every insert meets a
			// steady tree.
			for i := range 64 {
				insert(i)
			}
			before := e.db.Stats().TxStats
			cpu := proccpu.Self()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				insert(i)
			}
			b.StopTimer()
			cpu = proccpu.Self() - cpu
			after := e.db.Stats().TxStats
			d := after.Sub(&before)
			b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/op")
			b.ReportMetric(float64(d.GetPageAlloc())/float64(b.N), "pagebytes/op")
			b.ReportMetric(float64(d.GetPageCount())/float64(b.N), "pages/op")
			b.ReportMetric(float64(d.GetWrite())/float64(b.N), "writes/op")
			b.ReportMetric(d.GetSpillTime().Seconds()*1e6/float64(b.N), "spill-µs/op")
		})
	}
}
