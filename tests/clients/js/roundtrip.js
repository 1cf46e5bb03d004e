// kafkajs side of tests/integration/test_12_clients.py.
//
// Usage: node roundtrip.js '<plan as JSON>'
// The plan names the bootstrap server, topic, group, the records of each produce round and the
// timestamps to look up. This script only drives kafkajs and prints what it observed as one JSON
// object on stdout; every assertion is made by the Python test. Every wait is bounded.
'use strict'

const { AssignerProtocol, CompressionTypes, Kafka, logLevel } = require('kafkajs')

const plan = JSON.parse(process.argv[2])
const WAIT_MS = plan.wait_ms

const kafka = new Kafka({
  clientId: 'tern-it-kafkajs',
  brokers: [plan.bootstrap],
  logLevel: logLevel.WARN,
  connectionTimeout: 10000,
  requestTimeout: 30000,
  retry: { retries: 5 }
})

function withTimeout (promise, ms, what) {
  let timer
  const timeout = new Promise((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms)
  })
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer))
}

function toMessage (r) {
  const m = { partition: r.partition, key: r.key, value: r.value, headers: {} }
  for (const [k, v] of r.headers) m.headers[k] = v
  if (r.timestamp !== null) m.timestamp = String(r.timestamp)
  return m
}

async function produce (producer, records, compression) {
  // One send per round: kafkajs batches the messages per partition.
  const res = await withTimeout(
    producer.send({ topic: plan.topic, acks: -1, compression, messages: records.map(toMessage) }),
    WAIT_MS, 'producer.send')
  return res.map(r => ({ partition: r.partition, base_offset: Number(r.baseOffset), error: r.errorCode }))
}

// Joins the group, receives `count` records, commits what it consumed and leaves.
async function consumeAsGroup (admin, count) {
  const consumer = kafka.consumer({
    groupId: plan.group,
    sessionTimeout: 10000,
    heartbeatInterval: 1000,
    rebalanceTimeout: 10000,
    maxWaitTimeInMs: 100
  })
  const records = []
  let group
  let done
  const all = new Promise(resolve => { done = resolve })
  try {
    await withTimeout(consumer.connect(), WAIT_MS, 'consumer.connect')
    await withTimeout(consumer.subscribe({ topics: [plan.topic], fromBeginning: true }), WAIT_MS,
      'consumer.subscribe')
    await consumer.run({
      autoCommit: false,
      eachMessage: async ({ partition, message }) => {
        const headers = Object.entries(message.headers || {}).map(([k, v]) => [k, v.toString()])
        records.push({
          partition,
          offset: Number(message.offset),
          key: message.key === null ? null : message.key.toString(),
          value: message.value === null ? null : message.value.toString(),
          headers,
          timestamp: Number(message.timestamp)
        })
        if (records.length >= count) done()
      }
    })
    await withTimeout(all, WAIT_MS, `receiving ${count} records as group ${plan.group} ` +
      `(got ${records.length})`)
    group = await describeGroup(admin)
    const next = {}
    for (const r of records) next[r.partition] = Math.max(next[r.partition] || 0, r.offset + 1)
    await withTimeout(consumer.commitOffsets(Object.entries(next).map(([p, o]) => (
      { topic: plan.topic, partition: Number(p), offset: String(o) }))), WAIT_MS, 'commitOffsets')
  } finally {
    await withTimeout(consumer.disconnect(), WAIT_MS, 'consumer.disconnect')
  }
  return { records, group }
}

async function describeGroup (admin) {
  const { groups } = await withTimeout(admin.describeGroups([plan.group]), WAIT_MS,
    'admin.describeGroups')
  return groups.map(g => ({
    group: g.groupId,
    state: g.state,
    protocol_type: g.protocolType,
    protocol: g.protocol,
    error: g.errorCode,
    members: g.members.map(m => ({
      client_id: m.clientId,
      host: m.clientHost,
      // A consumer-protocol assignment: version, [topic, [partition]], user data.
      assignment: Object.fromEntries(
        Object.entries(AssignerProtocol.MemberAssignment.decode(m.memberAssignment).assignment)
          .map(([t, ps]) => [t, [...ps].sort((a, b) => a - b)]))
    }))
  }))
}

async function committed (admin) {
  const res = await withTimeout(admin.fetchOffsets({ groupId: plan.group, topics: [plan.topic] }),
    WAIT_MS, 'admin.fetchOffsets')
  const out = {}
  for (const t of res) for (const p of t.partitions) out[p.partition] = Number(p.offset)
  return out
}

async function main () {
  const out = {}
  const admin = kafka.admin()
  const producer = kafka.producer({ allowAutoTopicCreation: false })
  await withTimeout(admin.connect(), WAIT_MS, 'admin.connect')
  await withTimeout(producer.connect(), WAIT_MS, 'producer.connect')
  try {
    out.created = await withTimeout(admin.createTopics({
      topics: [{ topic: plan.topic, numPartitions: plan.partitions, replicationFactor: 1 }],
      waitForLeaders: true
    }), WAIT_MS, 'admin.createTopics')
    const meta = await withTimeout(admin.fetchTopicMetadata({ topics: [plan.topic] }), WAIT_MS,
      'admin.fetchTopicMetadata')
    out.metadata = meta.topics.map(t => ({
      topic: t.name,
      partitions: t.partitions.map(p => [p.partitionId, p.leader, p.partitionErrorCode])
        .sort((a, b) => a[0] - b[0])
    }))
    out.produced = await produce(producer, plan.first, CompressionTypes.None)
    const first = await consumeAsGroup(admin, plan.first.length)
    out.first = first.records
    out.group_while_consuming = first.group
    out.committed_first = await committed(admin)
    out.produced_second = await produce(producer, plan.second, CompressionTypes.GZIP)
    out.second = (await consumeAsGroup(admin, plan.second.length)).records
    out.committed_second = await committed(admin)
    out.group_after = await describeGroup(admin)
    const { groups } = await withTimeout(admin.listGroups(), WAIT_MS, 'admin.listGroups')
    out.groups = groups.map(g => [g.groupId, g.protocolType])
    out.by_time = {}
    for (const [name, ts] of Object.entries(plan.lookups)) {
      const res = await withTimeout(admin.fetchTopicOffsetsByTimestamp(plan.topic, ts), WAIT_MS,
        `fetchTopicOffsetsByTimestamp ${name}`)
      out.by_time[name] = Object.fromEntries(res.map(r => [r.partition, Number(r.offset)]))
    }
    const marks = await withTimeout(admin.fetchTopicOffsets(plan.topic), WAIT_MS, 'fetchTopicOffsets')
    out.watermarks = Object.fromEntries(marks.map(r => [r.partition, [Number(r.low), Number(r.high)]]))
  } finally {
    await withTimeout(producer.disconnect(), WAIT_MS, 'producer.disconnect')
    await withTimeout(admin.disconnect(), WAIT_MS, 'admin.disconnect')
  }
  process.stdout.write(JSON.stringify(out) + '\n')
}

main().then(() => process.exit(0), err => {
  process.stderr.write(`kafkajs round trip failed: ${err && err.stack ? err.stack : err}\n`)
  process.exit(1)
})
