// kafkajs side of tests/integration/test_13_cluster.py: against a multi-broker cluster, creates a
// topic with a replication factor, reads its leaders, produces one record set (acks=-1) and
// consumes it back as a group member.
//
// Usage: node cluster.js '<plan as JSON>'
// plan: { brokers: [host:port...], topic, group, partitions, replication_factor,
//         records: [{partition, key, value}], wait_ms }
// Prints one JSON object on stdout ({ leaders, produced, consumed }); the Python test asserts.
// Every wait is bounded.
'use strict'

const { Kafka, logLevel } = require('kafkajs')

const plan = JSON.parse(process.argv[2])
const WAIT_MS = plan.wait_ms

const kafka = new Kafka({
  clientId: 'tern-it-kafkajs-cluster',
  brokers: plan.brokers,
  logLevel: logLevel.WARN,
  connectionTimeout: 10000,
  requestTimeout: 30000,
  retry: { retries: 8 }
})

function withTimeout (promise, ms, what) {
  let timer
  const timeout = new Promise((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms)
  })
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer))
}

async function main () {
  const admin = kafka.admin()
  const producer = kafka.producer({ allowAutoTopicCreation: false })
  const consumer = kafka.consumer({
    groupId: plan.group,
    sessionTimeout: 10000,
    heartbeatInterval: 1000,
    rebalanceTimeout: 10000,
    maxWaitTimeInMs: 100
  })
  const out = {}
  try {
    await withTimeout(admin.connect(), WAIT_MS, 'admin.connect')
    await withTimeout(admin.createTopics({
      waitForLeaders: true,
      topics: [{
        topic: plan.topic,
        numPartitions: plan.partitions,
        replicationFactor: plan.replication_factor
      }]
    }), WAIT_MS, 'admin.createTopics')
    const md = await withTimeout(admin.fetchTopicMetadata({ topics: [plan.topic] }), WAIT_MS,
      'admin.fetchTopicMetadata')
    out.leaders = {}
    for (const p of md.topics[0].partitions) out.leaders[p.partitionId] = p.leader

    await withTimeout(producer.connect(), WAIT_MS, 'producer.connect')
    const res = await withTimeout(producer.send({
      topic: plan.topic,
      acks: -1,
      messages: plan.records.map(r => ({ partition: r.partition, key: r.key, value: r.value }))
    }), WAIT_MS, 'producer.send')
    out.produced = res.map(r => ({ partition: r.partition, base_offset: Number(r.baseOffset), error: r.errorCode }))

    const consumed = []
    let done
    const all = new Promise(resolve => { done = resolve })
    await withTimeout(consumer.connect(), WAIT_MS, 'consumer.connect')
    await withTimeout(consumer.subscribe({ topics: [plan.topic], fromBeginning: true }), WAIT_MS,
      'consumer.subscribe')
    await consumer.run({
      autoCommit: false,
      eachMessage: async ({ partition, message }) => {
        consumed.push({
          partition,
          offset: Number(message.offset),
          key: message.key === null ? null : message.key.toString(),
          value: message.value === null ? null : message.value.toString()
        })
        if (consumed.length >= plan.records.length) done()
      }
    })
    await withTimeout(all, WAIT_MS, `consuming ${plan.records.length} records (got ${consumed.length})`)
    out.consumed = consumed
  } finally {
    await Promise.allSettled([consumer.disconnect(), producer.disconnect(), admin.disconnect()])
  }
  process.stdout.write(JSON.stringify(out) + '\n')
}

main().then(() => process.exit(0), err => {
  process.stderr.write(`kafkajs cluster round trip failed: ${err.stack || err}\n`)
  process.exit(1)
})
