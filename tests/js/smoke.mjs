// kafkajs against a strata broker: admin, keyed gzip produce, a consumer group that reads
// everything and commits, partitions added, configs altered and described, records deleted, and a
// transactional producer refused at once.
// Usage: node smoke.mjs HOST:PORT. Exits 0 when every step checked out; prints why otherwise.
import assert from 'node:assert/strict';
import { Kafka, CompressionTypes, logLevel } from 'kafkajs';

const broker = process.argv[2];
const kafka = new Kafka({ clientId: 'strata-kafkajs', brokers: [broker], logLevel: logLevel.NOTHING });
const topic = `js-${Date.now()}-${Math.floor(Math.random() * 1e6)}`;
const deadline = Date.now() + 60_000;

const admin = kafka.admin();
await admin.connect();
assert.ok(await admin.createTopics({ topics: [{ topic, numPartitions: 3 }], waitForLeaders: true }));

const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
await producer.connect();
const messages = Array.from({ length: 30 }, (_, i) => ({ key: `k${i % 7}`, value: `v${i}` }));
await producer.send({ topic, compression: CompressionTypes.GZIP, acks: -1, messages });

// A consumer group reads all 30 and commits.
const groupId = `${topic}-g`;
const consumer = kafka.consumer({ groupId, sessionTimeout: 10_000, heartbeatInterval: 500 });
await consumer.connect();
await consumer.subscribe({ topic, fromBeginning: true });
const seen = new Set();
await consumer.run({
  autoCommit: true,
  eachMessage: async ({ message }) => { seen.add(message.value.toString()); },
});
while (seen.size < messages.length) {
  assert.ok(Date.now() < deadline, `the group read ${seen.size} of ${messages.length}`);
  await new Promise((r) => setTimeout(r, 100));
}
await consumer.stop();
await consumer.disconnect();
const committed = await admin.fetchOffsets({ groupId, topics: [topic] });
const total = committed[0].partitions.reduce((n, p) => n + Number(p.offset), 0);
assert.equal(total, messages.length, `committed offsets ${JSON.stringify(committed)}`);

// Partitions added; keys then spread over the new count.
await admin.createPartitions({ topicPartitions: [{ topic, count: 5 }] });
const md = await admin.fetchTopicMetadata({ topics: [topic] });
assert.equal(md.topics[0].partitions.length, 5);

// Configs altered and described.
await admin.alterConfigs({
  validateOnly: false,
  resources: [{ type: 2, name: topic, configEntries: [{ name: 'retention.ms', value: '3600000' }] }],
});
const described = await admin.describeConfigs({
  includeSynonyms: false,
  resources: [{ type: 2, name: topic, configNames: ['retention.ms'] }],
});
assert.equal(described.resources[0].configEntries[0].configValue, '3600000');

// Records deleted: the low watermark moves.
const before = await admin.fetchTopicOffsets(topic);
const p0 = before.find((p) => p.partition === 0);
if (Number(p0.high) > 0) {
  await admin.deleteTopicRecords({ topic, partitions: [{ partition: 0, offset: p0.high }] });
  const after = await admin.fetchTopicOffsets(topic);
  assert.equal(after.find((p) => p.partition === 0).low, p0.high);
}

// Transactions are not supported: a transactional producer fails at once, not after retries
// (kafkajs reports it as a coordinator it cannot find; it does not pass the broker's message on).
const txProducer = kafka.producer({ transactionalId: `${topic}-tx`, idempotent: true, maxInFlightRequests: 1 });
const t0 = Date.now();
await assert.rejects(async () => {
  await txProducer.connect();
  await txProducer.transaction();
});
assert.ok(Date.now() - t0 < 1000, `the transactional producer took ${Date.now() - t0} ms to fail`);
await txProducer.disconnect();

await producer.disconnect();
await admin.deleteTopics({ topics: [topic] });
await admin.disconnect();
console.log(`kafkajs ok: ${messages.length} messages, group ${groupId}`);
