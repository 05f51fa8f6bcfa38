'use strict'
// Our router in front of a cluster of three JS connectors (issue 13, "Front a connector
// cluster"):
//
//                                                  ┌─BTP─ JS connector c1 (g.cluster) ─BTP─ STREAM receiver
//   STREAM sender ─BTP─ router (group "cluster") ──┼─BTP─ JS connector c2 (g.cluster) ─BTP─ STREAM receiver
//                                                  └─BTP─ JS connector c3 (g.cluster) ─BTP─ STREAM receiver
//
//   node cluster.js [--receivers 9] [--amount 1000000000]
//
// ILP_ROUTER_BIN names the ilp-router binary (INTEROP_ROUTER_CORES=2: two cores;
// INTEROP_ROUTER_LOG_LEVEL=debug: its log level; INTEROP_DEBUG=1: the sender's packets and
// the STREAM connections each connector opens).
// Each connector is its own Node process (this script, forked with `--connector`), so that
// one can be killed: it dials our router over BTP as peer c1, c2 or c3, and all three have
// the ILP address g.cluster. Our router's route for g.cluster leads to the group `cluster`
// of the three, policy `hash`, hashing the destination up to two segments after the prefix
// (`receiver.<STREAM token>`), so each receiver address sticks to one connector. Each
// connector has a child `receiver` (g.cluster.receiver, learnt over the connector's ILDCP)
// with a STREAM server, and all three servers share one server secret: an address any of
// them generates is accepted by every one.
//
//   1. One STREAM payment to each of `--receivers` fresh receiver addresses (connection tag
//      r1, r2, …), one after another. Each must arrive whole at exactly one connector, and
//      together they must land on at least two of the three.
//   2. The connector that received the most is killed (SIGKILL), between payments. Its BTP
//      link drops; the script probes an address that used to go to it (a Prepare of 0 with
//      junk data, which a live connector's STREAM server rejects F02) until a live connector
//      answers, i.e. until the router has moved that share to the others.
//   3. One payment again to every address of step 1 (a new STREAM connection each: a closed
//      one leaves no state at its server). All must complete on the connectors still alive;
//      the dead one's receivers land on the others.
//
// A payment fails when its STREAM connect or its payment does not succeed within 10 s, when
// the amounts do not add up (the sender paid exactly `--amount`, the receiving connector got
// exactly what the rates give for the packets the sender got fulfilled, and the sender's
// STREAM says it delivered that), when its money arrived at more than one connector, or when
// a Prepare of the sender got a T-class Reject (STREAM retries those silently, so a packet
// sent to the dead link would otherwise pass unseen). Prints one line per payment, then
// `PASS …` last with the spread before and after the kill, else `FAIL cluster: …`.

const { fork } = require('child_process')
const crypto = require('crypto')
const L = require('./lib')

const RATES = { USD: '1', EUR: '1.08', XRP: '0.5' }
const HUGE = '1000000000000000000'
// sender XRP/6 → router → link router–cN EUR/9 (every backend of a group has the same asset)
// → cN (one-to-one) → receiver USD/7. Our router's max_packet_amount for the sender splits a
// payment of 10^9 into four packets.
const SENDER = { code: 'XRP', scale: 6 }
const LINK = { code: 'EUR', scale: 9 }
const RECEIVER = { code: 'USD', scale: 7 }
const MAX_PACKET = '300000000'
const CONNECTORS = ['c1', 'c2', 'c3']
// The whole script stops here, whatever is still running.
const BUDGET_MS = 80000
const CONNECT_TIMEOUT_MS = 10000
const PAY_TIMEOUT_MS = 10000

function args () {
  const out = { receivers: 9, amount: 1000000000n }
  const argv = process.argv.slice(2)
  for (let i = 0; i < argv.length; i += 2) {
    const [key, value] = [argv[i], argv[i + 1]]
    if (value === undefined) throw new Error(`${key} needs a value`)
    if (key === '--receivers') out.receivers = Number(value)
    else if (key === '--amount') out.amount = BigInt(value)
    else throw new Error(`unknown argument ${key}`)
  }
  if (!Number.isInteger(out.receivers) || out.receivers < 2 || out.receivers > 50) {
    throw new Error('--receivers must be 2..50')
  }
  if (out.amount <= 0n) throw new Error('--amount must be positive')
  return out
}

function withTimeout (promise, ms, what) {
  let timer
  const timeout = new Promise((resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} timed out after ${ms} ms`)), ms)
  })
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer))
}

// ---------------------------------------------------------------------------------------
// The connector process: `node cluster.js --connector <name>`, driven over IPC.
//
// parent → child: { type: 'start', name, routerPort, token, receiverPort, serverSecret (hex) }
//                 { type: 'address', id, tag }   generate a receiver address
//                 { type: 'stop' }
// child → parent: { type: 'ready', account }     linked to the router, receiver listening
//                 { type: 'address', id, destinationAccount, sharedSecret (hex) }
//                 { type: 'money', tag, amount } each amount a receiver stream got
//                 { type: 'error', message }

async function connectorMain () {
  const start = await new Promise(resolve => process.once('message', resolve))
  const { name, routerPort, token, receiverPort } = start
  const log = (...a) => L.log(`[${name}]`, ...a)
  // Orphaned (the parent died or closed the channel): leave at once.
  process.on('disconnect', () => process.exit(0))
  try {
    const connector = await L.startJsConnector({
      ilpAddress: 'g.cluster',
      accounts: {
        router: {
          relation: 'peer',
          sendRoutes: false,
          receiveRoutes: false,
          assetCode: LINK.code,
          assetScale: LINK.scale,
          balance: { maximum: HUGE },
          plugin: 'ilp-plugin-btp',
          options: { server: `btp+ws://${name}:${token}@127.0.0.1:${routerPort}` }
        },
        receiver: {
          relation: 'child',
          assetCode: RECEIVER.code,
          assetScale: RECEIVER.scale,
          balance: { maximum: HUGE },
          plugin: 'ilp-plugin-btp',
          options: { listener: { port: receiverPort, secret: 'receiver-secret' } }
        }
      },
      // The STREAM receivers' frames back to the sender (g.router.sender).
      routes: [{ targetPrefix: 'g.router', peerId: 'router' }]
    })
    const deadline = Date.now() + 10000
    while (!connector.getPlugin('router').isConnected()) {
      if (Date.now() > deadline) throw new Error(`${name} did not connect to the router`)
      await L.sleep(50)
    }
    const plugin = L.btpClient(`btp+ws://:receiver-secret@127.0.0.1:${receiverPort}`)
    await plugin.connect()
    const { createServer } = require('ilp-protocol-stream')
    const server = await createServer({ plugin, serverSecret: Buffer.from(start.serverSecret, 'hex') })
    server.on('connection', connection => {
      const tag = connection.connectionTag || ''
      // A payment usually opens two: the sender's last packet comes after the first closed.
      if (process.env.INTEROP_DEBUG) log(`STREAM connection ${tag}`)
      connection.on('stream', stream => {
        stream.setReceiveMax(Infinity)
        stream.on('money', amount => process.send({ type: 'money', tag, amount: String(amount) }))
      })
    })
    process.on('message', async msg => {
      if (msg.type === 'address') {
        const { destinationAccount, sharedSecret } = server.generateAddressAndSecret({ connectionTag: msg.tag })
        process.send({ type: 'address', id: msg.id, destinationAccount, sharedSecret: sharedSecret.toString('hex') })
      } else if (msg.type === 'stop') {
        await plugin.disconnect().catch(() => {})
        await connector.shutdown().catch(() => {})
        process.exit(0)
      }
    })
    log(`ready: linked to the router, STREAM receiver in ${server.assetCode}/${server.assetScale}`)
    process.send({ type: 'ready', account: 'g.cluster.receiver' })
  } catch (err) {
    log('FAIL', err && err.stack ? err.stack : err)
    process.send({ type: 'error', message: String(err && err.message) })
    process.exit(1)
  }
}

// ---------------------------------------------------------------------------------------
// The script.

/// Forks one connector process (into `env.connectors` at once, for the cleanup) and waits
/// until it is linked to the router.
async function startConnector (env, name, serverSecret) {
  const receiverPort = await L.freePort()
  const child = fork(__filename, ['--connector', name], { stdio: 'inherit' })
  const c = { name, child, alive: true, exited: null, pending: new Map() }
  env.connectors.push(c)
  child.on('exit', (code, signal) => {
    c.alive = false
    c.exited = { code, signal }
    for (const { reject } of c.pending.values()) reject(new Error(`${name} exited`))
    c.pending.clear()
  })
  child.on('message', msg => {
    if (msg.type === 'money') {
      const byTag = env.money.get(name)
      byTag.set(msg.tag, (byTag.get(msg.tag) || 0n) + BigInt(msg.amount))
      if (!c.alive || env.killed.has(name)) env.lateMoney.push(`${name} ${msg.tag} ${msg.amount}`)
    } else if (msg.type === 'address' && c.pending.has(msg.id)) {
      c.pending.get(msg.id).resolve(msg)
      c.pending.delete(msg.id)
    }
  })
  env.money.set(name, new Map())
  const ready = new Promise((resolve, reject) => {
    child.on('message', msg => {
      if (msg.type === 'ready') resolve()
      else if (msg.type === 'error') reject(new Error(`${name}: ${msg.message}`))
    })
    child.once('exit', () => reject(new Error(`${name} exited before it was ready`)))
  })
  child.send({ type: 'start', name, routerPort: env.routerPort, token: `${name}-token`, receiverPort, serverSecret })
  await withTimeout(ready, 15000, `${name} start`)
  return c
}

let nextRequest = 1
/// A receiver address with connection tag `tag`, generated by a live connector's STREAM server
/// (any of them: they share the server secret).
function receiverAddress (env, tag) {
  const c = env.connectors.find(c => c.alive && !env.killed.has(c.name))
  const id = nextRequest++
  const reply = new Promise((resolve, reject) => c.pending.set(id, { resolve, reject }))
  c.child.send({ type: 'address', id, tag })
  return withTimeout(reply, 5000, `address from ${c.name}`).then(r => ({
    destinationAccount: r.destinationAccount,
    sharedSecret: Buffer.from(r.sharedSecret, 'hex')
  }))
}

/// What each connector has received for `tag` so far.
function moneyFor (env, tag) {
  return Object.fromEntries(CONNECTORS.map(n => [n, env.money.get(n).get(tag) || 0n]))
}

/// The sender's link: our router's child, whose STREAM connection learns g.router.sender and
/// XRP/6 from the router over ILDCP.
function senderPlugin (env) {
  return new L.RecordingPlugin(L.btpClient(`btp+ws://sender:sender-token@127.0.0.1:${env.routerPort}`))
}

/// Our router then the connector: each packet converted on its own, rounded down each time.
function convert (amount) {
  return L.jsOneToOne(L.routerConvert(amount, SENDER, LINK, RATES), LINK, RECEIVER)
}

/// One STREAM payment of `amount` to `credentials` (tag `tag`) on a fresh sender link (STREAM
/// disconnects it when the connection closes). Returns { ok, connector, line }.
async function pay (env, label, tag, credentials, amount) {
  const plugin = senderPlugin(env)
  const before = moneyFor(env, tag)
  const problems = []
  const started = Date.now()
  let connection = null
  let delivered = 0n
  let connectMs = null
  try {
    const { createConnection } = require('ilp-protocol-stream')
    connection = await withTimeout(
      createConnection({ plugin, ...credentials, slippage: 0.05 }),
      CONNECT_TIMEOUT_MS, 'STREAM connect')
    connectMs = Date.now() - started
    // What the sender learned from our router over ILDCP.
    const learned = `${connection.sourceAccount} ${connection.sourceAssetCode}/${connection.sourceAssetScale}`
    if (learned !== `g.router.sender ${SENDER.code}/${SENDER.scale}`) problems.push(`the sender learned ${learned} over ILDCP`)
    const stream = connection.createStream()
    await withTimeout(stream.sendTotal(amount.toString(), { timeout: PAY_TIMEOUT_MS }),
      PAY_TIMEOUT_MS + 1000, 'sendTotal')
    delivered = BigInt(connection.totalDelivered)
    await withTimeout(connection.end(), 5000, 'connection.end').catch(err => problems.push(err.message))
  } catch (err) {
    problems.push(err.message)
    if (connection) connection.destroy().catch(() => {})
  }
  await plugin.disconnect().catch(() => {})
  const ms = Date.now() - started

  const fulfilled = plugin.sent.filter(p => p.fulfilled && p.amount > 0n)
  const paid = fulfilled.reduce((s, p) => s + p.amount, 0n)
  const expected = fulfilled.reduce((s, p) => s + convert(p.amount), 0n)
  // The receiver's money events come over IPC and may trail the sender's view a little.
  let got = {}
  const waitUntil = Date.now() + 1000
  for (;;) {
    const now = moneyFor(env, tag)
    got = Object.fromEntries(CONNECTORS.map(n => [n, now[n] - before[n]]).filter(([, v]) => v !== 0n))
    const sum = Object.values(got).reduce((s, v) => s + v, 0n)
    if (sum >= expected || Date.now() > waitUntil) break
    await L.sleep(10)
  }
  const at = Object.keys(got)
  const received = Object.values(got).reduce((s, v) => s + v, 0n)
  if (problems.length === 0) {
    if (paid !== amount) problems.push(`sender paid ${paid}, asked for ${amount}`)
    if (expected === 0n) problems.push('nothing was expected to arrive: amount too small')
    if (delivered !== expected) problems.push(`sender's totalDelivered ${delivered}, the rates give ${expected}`)
    if (received !== expected) problems.push(`the connectors got ${received}, the rates give ${expected}`)
  }
  if (at.length > 1) problems.push(`its money arrived at ${at.length} connectors (${at.join(', ')}): not sticky`)
  const dead = at.filter(n => env.killed.has(n))
  if (dead.length) problems.push(`money arrived at the killed ${dead.join(', ')}`)
  const temporary = plugin.sent.filter(p => p.code && p.code[0] === 'T')
  if (temporary.length) {
    const counts = {}
    for (const p of temporary) {
      const key = `${p.code} from ${p.triggeredBy} "${p.message}"`
      counts[key] = (counts[key] || 0) + 1
    }
    problems.push('T-class Rejects (STREAM retried them): ' +
      Object.entries(counts).map(([k, n]) => `${n}× ${k}`).join(', '))
  }
  const ok = problems.length === 0
  const line = `${label} ${tag}: ${ok ? 'ok' : 'FAILED'} at ${at.join('+') || 'no connector'}` +
    ` (${ms} ms, connect ${connectMs === null ? '-' : connectMs + ' ms'}, ${fulfilled.length} packet(s),` +
    ` paid ${paid}, delivered ${delivered}, received ${received})` + (ok ? '' : `: ${problems.join('; ')}`)
  L.log(line)
  return { ok, connector: at.length === 1 ? at[0] : null, line }
}

/// Sends Prepares of 0 with junk data to `destination` (an address that went to the killed
/// connector) until a live connector answers: its STREAM server cannot read the data and
/// rejects F02 from g.cluster.receiver. Returns how long that took; throws after `limitMs`.
async function waitForFailover (env, destination, limitMs) {
  const IlpPacket = require('ilp-packet')
  const started = Date.now()
  const plugin = senderPlugin(env)
  await plugin.connect()
  const answers = []
  try {
    while (Date.now() - started < limitMs) {
      const prepare = IlpPacket.serializeIlpPrepare({
        amount: '0',
        executionCondition: crypto.randomBytes(32),
        // Our router and the connector each take 1 s off (min_message_window_ms,
        // minMessageWindow) and want at least as much left.
        expiresAt: new Date(Date.now() + 5000),
        destination,
        data: Buffer.from('probe')
      })
      let answer
      try {
        const reply = await withTimeout(plugin.inner.sendData(prepare), 2500, 'probe')
        answer = reply[0] === IlpPacket.Type.TYPE_ILP_REJECT ? IlpPacket.deserializeIlpReject(reply) : { code: 'fulfill' }
      } catch (err) {
        answer = { code: 'none', message: err.message }
      }
      answers.push(`${answer.code}${answer.triggeredBy ? ' from ' + answer.triggeredBy : ''}`)
      if (answer.triggeredBy && answer.triggeredBy.startsWith('g.cluster')) {
        L.log(`probe: a live connector answered after ${Date.now() - started} ms (${answers.length} probe(s): ${[...new Set(answers)].join(', ')})`)
        return Date.now() - started
      }
      await L.sleep(50)
    }
  } finally {
    await plugin.disconnect().catch(() => {})
  }
  throw new Error(`no live connector answered for ${destination.slice(0, 40)}… within ${limitMs} ms (${answers.length} probes: ${[...new Set(answers)].join(', ')})`)
}

/// Ends the run early; what failed is in `failures` already.
class Stop extends Error {}

function spread (assignments) {
  const counts = Object.fromEntries(CONNECTORS.map(n => [n, 0]))
  for (const n of Object.values(assignments)) if (n) counts[n]++
  return CONNECTORS.map(n => `${n} ${counts[n]}`).join(', ')
}

async function main () {
  const opts = args()
  const t0 = Date.now()
  const failures = []
  let summary = null
  const env = {
    routerPort: await L.freePort(),
    connectors: [],
    money: new Map(),
    killed: new Set(),
    lateMoney: []
  }
  let router = null
  const budget = setTimeout(() => {
    L.log(`FAIL cluster: not finished after ${BUDGET_MS} ms`)
    for (const c of env.connectors) c.child.kill('SIGKILL')
    if (router) router.child.kill('SIGKILL')
    console.log(`FAIL cluster: not finished after ${BUDGET_MS} ms`)
    process.exit(1)
  }, BUDGET_MS)
  try {
    router = await L.startRouter({
      btpPort: env.routerPort,
      config: `
ilp_address = "g.router"
[listen]
btp = "127.0.0.1:${env.routerPort}"
[[peers]]
name = "sender"
auth_tokens = ["sender-token"]
relation = "child"
asset_code = "${SENDER.code}"
asset_scale = ${SENDER.scale}
max_balance = "${HUGE}"
max_packet_amount = "${MAX_PACKET}"   # STREAM learns it from our F08 and splits the payment
${CONNECTORS.map(n => `[[peers]]
name = "${n}"
auth_tokens = ["${n}-token"]
relation = "peer"
send_routes = false                   # a static route (to the group): no CCP with the cluster
receive_routes = false
asset_code = "${LINK.code}"
asset_scale = ${LINK.scale}
max_balance = "${HUGE}"`).join('\n')}
[[groups]]
name = "cluster"
peers = [${CONNECTORS.map(n => `"${n}"`).join(', ')}]
policy = "hash"
hash_segments = 2                     # receiver.<STREAM token>: one connection, one connector
[[routes]]
prefix = "g.cluster"
group = "cluster"
[rates]
${Object.entries(RATES).map(([k, v]) => `${k} = "${v}"`).join('\n')}
`
    })
    const serverSecret = crypto.randomBytes(32).toString('hex')
    await Promise.all(CONNECTORS.map(n => startConnector(env, n, serverSecret)))
    L.log(`setup done in ${Date.now() - t0} ms: router on ${process.env.INTEROP_ROUTER_CORES || 1} core(s), connectors ${CONNECTORS.join(', ')} linked`)

    // 1. Fresh receiver addresses, one payment each.
    const receivers = []
    for (let i = 1; i <= opts.receivers; i++) {
      const tag = `r${i}`
      receivers.push({ tag, credentials: await receiverAddress(env, tag) })
    }
    const before = {}
    for (const r of receivers) {
      const result = await pay(env, 'before the kill', r.tag, r.credentials, opts.amount)
      if (!result.ok) failures.push(`before the kill ${r.tag}`)
      before[r.tag] = result.connector
    }
    const hit = CONNECTORS.filter(n => Object.values(before).includes(n))
    L.log(`before the kill: ${spread(before)}`)
    if (hit.length < 2) failures.push(`the payments landed on ${hit.length} connector(s), not spread over at least 2`)
    if (failures.length) throw new Stop('not killing a connector: the payments before the kill failed')

    // 2. Kill the busiest connector between payments; wait until the router has moved its
    // share (a live connector answers for one of its addresses).
    const victimName = [...hit].sort((a, b) =>
      Object.values(before).filter(n => n === b).length - Object.values(before).filter(n => n === a).length)[0]
    const victim = env.connectors.find(c => c.name === victimName)
    const exited = new Promise(resolve => victim.child.once('exit', resolve))
    env.killed.add(victimName)
    victim.child.kill('SIGKILL')
    await withTimeout(exited, 5000, `${victimName} exit`)
    L.log(`killed ${victimName} (SIGKILL), which had ${Object.values(before).filter(n => n === victimName).length} receiver(s)`)
    const orphan = receivers.find(r => before[r.tag] === victimName)
    const failoverMs = await waitForFailover(env, orphan.credentials.destinationAccount, 5000)

    // 3. Every address again, on a new STREAM connection.
    const after = {}
    for (const r of receivers) {
      const result = await pay(env, 'after the kill', r.tag, r.credentials, opts.amount)
      if (!result.ok) failures.push(`after the kill ${r.tag}`)
      after[r.tag] = result.connector
    }
    const moved = receivers.filter(r => before[r.tag] === victimName)
      .map(r => `${r.tag} ${victimName}→${after[r.tag] || '?'}`)
    const survivors = receivers.filter(r => before[r.tag] !== victimName)
    const stayed = survivors.filter(r => after[r.tag] === before[r.tag]).length
    L.log(`after the kill: ${spread(after)}; ${victimName}'s receivers moved: ${moved.join(', ')};` +
      ` the others' receivers stayed on their connector: ${stayed} of ${survivors.length}`)
    if (env.lateMoney.length) failures.push(`money reported by a killed connector: ${env.lateMoney.join(', ')}`)
    if (!failures.length) {
      summary = `PASS cluster: ${opts.receivers * 2} STREAM payments of ${opts.amount} ${SENDER.code}/${SENDER.scale}` +
        ` through the group of ${CONNECTORS.length} connectors (hash); before the kill: ${spread(before)};` +
        ` ${victimName} killed, its share moved within ${failoverMs} ms; after: ${spread(after)}` +
        ` (${stayed} of ${survivors.length} other receivers stayed put); no T-class Reject`
    }
  } catch (err) {
    if (err instanceof Stop) L.log(err.message)
    else {
      failures.push(err && err.message)
      L.log('FAIL', err && err.stack ? err.stack : err)
    }
  } finally {
    // Our router first, while the connectors still answer what it has in flight (it drains
    // its Prepares before it exits); then the connectors.
    if (router) {
      const result = await router.stop()
      if (result && result.code !== 0) failures.push(`router exit ${JSON.stringify(result)}`)
    }
    await Promise.all(env.connectors.filter(c => c.alive).map(c => {
      const done = new Promise(resolve => c.child.once('exit', resolve))
      c.child.send({ type: 'stop' })
      const timer = setTimeout(() => c.child.kill('SIGKILL'), 3000)
      return done.then(() => clearTimeout(timer))
    }))
    clearTimeout(budget)
  }
  L.log(`finished in ${Date.now() - t0} ms`)
  // Printed last, after the router and the connectors have stopped.
  if (failures.length) console.log(`FAIL cluster: ${failures.length} failed: ${failures.join('; ')}`)
  else console.log(summary)
  process.exit(failures.length ? 1 : 0)
}

if (process.argv[2] === '--connector') connectorMain()
else main()
