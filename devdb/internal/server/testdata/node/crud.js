// Exercise devdb with the Node.js `mongodb` driver: connect, insert, update,
// find (across getMore batches), count, aggregate, delete. Usage:
//   node crud.js 'mongodb://127.0.0.1:PORT/?directConnection=true'
// The `mongodb` package must be resolvable (NODE_PATH=<dir>/node_modules).
// Exits 0 and prints "ok" when every check passes; prints the failure and
// exits 1 otherwise.
'use strict';
const assert = require('node:assert/strict');
const { MongoClient } = require('mongodb');

async function main(uri) {
  const client = new MongoClient(uri, { serverSelectionTimeoutMS: 5000 });
  await client.connect();
  try {
    const admin = client.db('admin');
    const hello = await admin.command({ hello: 1 });
    assert.equal(hello.isWritablePrimary, true);
    assert.equal(hello.maxWireVersion, 17);
    await admin.command({ ping: 1 });
    const info = await admin.command({ buildInfo: 1 });
    assert.equal(info.devdb, true);

    const coll = client.db('nodecheck').collection('people');
    await coll.drop().catch(() => {});
    const one = await coll.insertOne({ name: 'ada', age: 36 });
    assert.ok(one.insertedId);
    const many = await coll.insertMany(
      Array.from({ length: 250 }, (_, i) => ({ name: `p${i}`, age: i % 50, tags: ['x', `t${i % 3}`] })));
    assert.equal(many.insertedCount, 250);
    await assert.rejects(coll.insertOne({ _id: one.insertedId }), (e) => e.code === 11000);

    const upd = await coll.updateOne({ name: 'ada' }, { $set: { age: 37 }, $push: { tags: 'math' } });
    assert.equal(upd.matchedCount, 1);
    assert.equal(upd.modifiedCount, 1);
    const multi = await coll.updateMany({ age: { $lt: 10 } }, { $inc: { age: 100 } });
    assert.equal(multi.modifiedCount, 50);
    const ups = await coll.updateOne({ name: 'new' }, { $setOnInsert: { age: 1 } }, { upsert: true });
    assert.equal(ups.upsertedCount, 1);

    const ada = await coll.findOne({ name: 'ada' }, { projection: { _id: 0, name: 1, age: 1, tags: 1 } });
    assert.deepEqual(ada, { name: 'ada', age: 37, tags: ['math'] });
    const all = await coll.find({}, { batchSize: 7 }).sort({ name: 1 }).toArray();
    assert.equal(all.length, 252);
    const big = await coll.find({ age: { $gte: 100 } }).sort({ age: -1, name: 1 }).limit(5).toArray();
    assert.equal(big.length, 5);
    assert.equal(big[0].age, 109);

    assert.equal(await coll.countDocuments({}), 252);
    assert.equal(await coll.countDocuments({ tags: 't1' }), 83);
    assert.equal(await coll.estimatedDocumentCount(), 252);
    const groups = await coll.aggregate([
      { $match: { age: { $gte: 100 } } },
      { $group: { _id: null, n: { $sum: 1 }, max: { $max: '$age' } } },
    ]).toArray();
    assert.deepEqual(groups, [{ _id: null, n: 50, max: 109 }]);

    const del = await coll.deleteMany({ age: { $gte: 100 } });
    assert.equal(del.deletedCount, 50);
    assert.equal(await coll.countDocuments(), 202);
    const names = (await client.db('nodecheck').listCollections().toArray()).map((c) => c.name);
    assert.ok(names.includes('people'));

    // Following the oplog as oplog tailers do: a tailable awaitData find on
    // local.oplog.rs of the entries after the last one, then a write.
    const oplog = client.db('local').collection('oplog.rs');
    const [last] = await oplog.find({}).sort({ $natural: -1 }).limit(1).toArray();
    const tail = oplog.find({ ts: { $gt: last.ts }, ns: 'nodecheck.people' },
      { tailable: true, awaitData: true, maxAwaitTimeMS: 5000 });
    const next = tail.next();
    await coll.insertOne({ name: 'tailed' });
    const entry = await next;
    assert.equal(entry.op, 'i');
    assert.equal(entry.o.name, 'tailed');
    await tail.close();
    await coll.drop();
  } finally {
    await client.close();
  }
}

main(process.argv[2]).then(
  () => { console.log('ok'); },
  (err) => { console.error(err); process.exit(1); });
