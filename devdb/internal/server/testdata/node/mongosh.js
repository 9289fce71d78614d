// Run by mongosh against devdb (see node_test.go):
//   mongosh 'mongodb://127.0.0.1:PORT/?directConnection=true' --quiet --file mongosh.js
// Prints "ok" when every check passes; a failed check throws, so mongosh exits non-zero.
function eq(want, got, what) {
  if (want !== got) throw new Error(`${what}: got ${JSON.stringify(got)}, want ${JSON.stringify(want)}`);
}
function check(cond, what) {
  if (!cond) throw new Error(`check failed: ${what}`);
}
const d = db.getSiblingDB('shellcheck');
d.items.drop();
const r = d.items.insertMany([{ _id: 1, n: 1 }, { _id: 2, n: 2 }, { _id: 3, n: 3 }]);
eq(3, Object.keys(r.insertedIds).length, 'Object.keys(r.insertedIds).length');
eq(1, d.items.updateOne({ _id: 2 }, { $set: { n: 20 } }).modifiedCount, 'd.items.updateOne({ _id: 2 }, { $set: { n: 20 } }).modifiedCount');
eq(20, d.items.findOne({ _id: 2 }).n, 'd.items.findOne({ _id: 2 }).n');
eq(2, d.items.find({ n: { $gt: 1 } }).toArray().length, 'd.items.find({ n: { $gt: 1 } }).toArray().length');
eq(3, d.items.countDocuments(), 'd.items.countDocuments()');
eq(1, d.items.deleteOne({ _id: 1 }).deletedCount, 'd.items.deleteOne({ _id: 1 }).deletedCount');
eq(2, d.items.countDocuments({}), 'd.items.countDocuments({})');
check(db.adminCommand({ listDatabases: 1 }).databases.some((x) => x.name === 'shellcheck'), "db.adminCommand({ listDatabases: 1 }).databases.some((x) => x.name === 'shellcheck')");
check(d.getCollectionNames().includes('items'), "d.getCollectionNames().includes('items')");
eq('6.0.19', db.version(), 'db.version()');
const st = d.items.stats();
eq(2, st.count, 'd.items.stats().count');
eq(false, st.capped, 'd.items.stats().capped');
check(d.items.dataSize() > 0, 'd.items.dataSize() > 0');
const ds = d.stats();
eq(1, ds.collections, 'd.stats().collections');
eq(2, ds.objects, 'd.stats().objects');
// The oplog window, as an operator reads it: db.getReplicationInfo() reads
// local.oplog.rs's stats and its two ends by $natural.
const ri = db.getReplicationInfo();
check(ri.logSizeMB > 0 && ri.usedMB > 0, `db.getReplicationInfo() sizes: ${JSON.stringify(ri)}`);
check(typeof ri.timeDiff === 'number' && ri.timeDiff >= 0, `db.getReplicationInfo().timeDiff: ${JSON.stringify(ri)}`);
const last = db.getSiblingDB('local').oplog.rs.find({ ns: 'shellcheck.items' }).sort({ $natural: -1 }).limit(1).next();
eq('d', last.op, "the last oplog entry of shellcheck.items: op");
eq(1, last.o._id, "the last oplog entry of shellcheck.items: o._id");
// explain, as a mongosh user calls it: the winning plan devdb reports.
const byId = d.items.find({ _id: 2 }).explain();
print(`find({ _id: 2 }).explain() winning stage: ${byId.queryPlanner.winningPlan.stage}`);
eq('IDHACK', byId.queryPlanner.winningPlan.stage, 'd.items.find({ _id: 2 }).explain().queryPlanner.winningPlan.stage');
const scan = d.items.find({ n: { $gt: 1 } }).explain('executionStats');
print(`find({ n: { $gt: 1 } }).explain('executionStats') winning stage: ${scan.queryPlanner.winningPlan.stage}`);
eq('COLLSCAN', scan.queryPlanner.winningPlan.stage, "d.items.find({ n: { $gt: 1 } }).explain('executionStats') winning stage");
eq(2, scan.executionStats.nReturned, "d.items.find({ n: { $gt: 1 } }).explain('executionStats').executionStats.nReturned");
eq(2, scan.executionStats.totalDocsExamined, "d.items.find({ n: { $gt: 1 } }).explain('executionStats').executionStats.totalDocsExamined");
const agg = d.items.explain('executionStats').aggregate([{ $match: { n: { $gt: 1 } } }, { $group: { _id: null, c: { $sum: 1 } } }]);
eq('COLLSCAN', agg.stages[0].$cursor.queryPlanner.winningPlan.stage, "d.items.explain('executionStats').aggregate(...).stages[0].$cursor winning stage");
const upd = d.items.explain('executionStats').findOneAndUpdate({ _id: 2 }, { $set: { n: 0 } });
eq('UPDATE', upd.queryPlanner.winningPlan.stage, "d.items.explain('executionStats').findOneAndUpdate(...) winning stage");
eq(1, upd.executionStats.executionStages.nWouldModify, "d.items.explain('executionStats').findOneAndUpdate(...) nWouldModify");
eq(20, d.items.findOne({ _id: 2 }).n, 'd.items.findOne({ _id: 2 }).n after an explained findOneAndUpdate');
d.dropDatabase();
print('ok');
