package server

import (
	"os"
	"path/filepath"
	"testing"
)

// The change stream checks with real non-Go clients; like TestNodeDriver
// and TestMongosh they skip unless DEVDB_NODE_MODULES names a node_modules
// directory holding the mongodb and mongosh packages.

// csNodeScript exercises collection.watch(pipeline, {fullDocument:
// 'updateLookup'}) with the Node.js driver: event shapes, updateLookup,
// the $match pipeline, and resumeAfter.
const csNodeScript = `
const assert = require('assert');
const { MongoClient } = require('mongodb');
(async () => {
  const client = new MongoClient(process.argv[2]);
  await client.connect();
  const coll = client.db('nodecs').collection('items');
  const cs = coll.watch([{ $match: { operationType: { $in: ['insert', 'update'] } } }],
    { fullDocument: 'updateLookup', maxAwaitTimeMS: 500 });
  const first = cs.next();
  await coll.insertOne({ _id: 1, n: 1 });
  const ins = await first;
  assert.deepStrictEqual(Object.keys(ins), ['_id', 'operationType', 'clusterTime', 'wallTime', 'fullDocument', 'ns', 'documentKey']);
  assert.deepStrictEqual(ins.fullDocument, { _id: 1, n: 1 });
  await coll.updateOne({ _id: 1 }, { $set: { n: 2, 'sub.x': 1 } });
  const upd = await cs.next();
  assert.strictEqual(upd.operationType, 'update');
  assert.deepStrictEqual(upd.fullDocument, { _id: 1, n: 2, sub: { x: 1 } });
  assert.deepStrictEqual(upd.updateDescription, { updatedFields: { n: 2, sub: { x: 1 } }, removedFields: [], truncatedArrays: [] });
  await coll.deleteOne({ _id: 1 });
  await coll.insertOne({ _id: 2 });
  const ins2 = await cs.next();
  assert.deepStrictEqual(ins2.documentKey, { _id: 2 });
  await cs.close();
  const r = coll.watch([], { resumeAfter: upd._id });
  const del = await r.next();
  assert.strictEqual(del.operationType, 'delete');
  assert.deepStrictEqual(del.documentKey, { _id: 1 });
  await r.close();
  await client.close();
  console.log('ok');
})().catch(e => { console.error(e); process.exit(1); });
`

// csMongoshScript exercises db.coll.watch() and db.watch() in mongosh.
const csMongoshScript = `
const items = db.getSiblingDB('shcs').items;
const cs = items.watch();
items.insertOne({ _id: 'a', v: 1 });
items.updateOne({ _id: 'a' }, { $inc: { v: 1 } });
const e1 = cs.next();
const e2 = cs.next();
if (e1.operationType !== 'insert' || e1.fullDocument.v !== 1) throw new Error('insert: ' + EJSON.stringify(e1));
if (e2.operationType !== 'update' || e2.updateDescription.updatedFields.v !== 2) throw new Error('update: ' + EJSON.stringify(e2));
const ds = db.getSiblingDB('shcs').watch([], { fullDocument: 'updateLookup' });
db.getSiblingDB('shcs').other.insertOne({ _id: 1 });
const e3 = ds.next();
if (e3.ns.coll !== 'other') throw new Error('db stream: ' + EJSON.stringify(e3));
cs.close();
ds.close();
print('ok');
`

// csWriteScript writes a client script into a temporary directory.
func csWriteScript(t *testing.T, name, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestChangeStreamNodeDriver(t *testing.T) {
	mods, node := nodeDriver(t)
	s := startTestServer(t, Options{}, testHooks{})
	runClient(t, []string{"NODE_PATH=" + mods}, node, csWriteScript(t, "watch.js", csNodeScript), s.URI())
}

func TestChangeStreamMongosh(t *testing.T) {
	shell := mongoshPath(t)
	s := startTestServer(t, Options{}, testHooks{})
	runClient(t, []string{"HOME=" + t.TempDir(), "MONGOSH_NO_TELEMETRY=1"}, shell, s.URI(), "--quiet", "--norc",
		"--file", csWriteScript(t, "watch.js", csMongoshScript))
}
