'use strict'
// Route exchange (CCP) across a chain of three connectors, with no static route for the far
// prefixes anywhere:
//
//   STREAM endpoints ─BTP─ JS connector A (test.a) ═BTP (A dials)═ router (test.router) ═BTP (router dials)═ JS connector B (test.b) ─BTP─ STREAM endpoints
//
//   node ccp-chain.js [--amount 1000000000] [--no-reference]
//
// ILP_ROUTER_BIN names the ilp-router binary (INTEROP_ROUTER_LOG_LEVEL=debug: its log level;
// INTEROP_DEBUG=1: every packet of the STREAM endpoints; DEBUG=connector:*ccp*,connector:route*
// traces the JS connectors' route exchange). Both links are `relation = "peer"` on both sides,
// so routes flow both ways: A must learn test.b, and B test.a, through our router.
//
//   0. Reference: the same chain with a third JS connector in our router's place (address
//      test.router, accounts `a` and `b` as our peers are named). Its routing table and A's
//      and B's, once converged, are what the router's run must show.
//   1. Our router in the middle. Its `GET /routes` must list exactly test.a learned from `a`
//      (path test.a) and test.b learned from `b` (path test.b), both used, i.e. what the
//      reference connector's table holds for them; A's and B's own tables (ilp-connector's
//      admin API, `GET /routing`) must be the reference run's, entry for entry (next hop and
//      path): A reaches test.b through `router` with path test.router test.b, B test.a with
//      test.router test.a, and both reach test.router itself and test.c (a configured route of
//      the middle connector, to a child that never connects) with path test.router: a JS
//      connector puts its own address first in the path of every route it sends, its own
//      address's and its configured routes' included.
//   2. STREAM payments A→B and B→A, each checked as stream-payment.js checks its payment: the
//      sender paid exactly the amount, every fulfilled packet arrived as exactly what the
//      rates give (A and B: one-to-one by scale, rounded down; our router: exact, rounded
//      down), and the receiver's total and the sender's totalDelivered are their sum; no
//      T-class Reject on the way (STREAM retries those silently).
//   3. B goes away (its connector shuts down: the router's link to it drops). The router must
//      withdraw test.b (gone from its /routes), and A must drop it too (the router's update).
//      Then: a Prepare sent through the router to B's receiver gets the router's own answer,
//      F02 (no route: the spec's Adopt is F02 for no matching route, T01 only while a route
//      still points at a peer whose link is down), and a STREAM payment from A's sender fails
//      at once with F02 from A (its table no longer has test.b).
//   4. B comes back (a new connector, a new routing table id, on the same port): the router
//      redials it, learns test.b again and relays it to A; payments A→B and B→A succeed again.
//
// Routes usually converge in well under a second. ilp-connector, though, refuses a route
// control request (SYNC) that reaches it before its plugin's `connect` event (see
// resyncRefused), and the refused side asks again only after 30 s. Between two JS connectors
// this happens in most runs; the reference run asks again at once instead of waiting. Our
// router sends its SYNC a few milliseconds after a link comes up, and loses that race now and
// then on a busy machine; then it asks again after 30 s too, so the waits that follow a new
// link allow 40 s, and a wait still running after 3 s prints which side has not synced.
//
// Every wait polls against a deadline; the whole script gives up after 90 s. Prints `PASS …`
// last on success, else `FAIL ccp-chain: …`.

const crypto = require('crypto')
const path = require('path')
const IlpPacket = require('ilp-packet')
const L = require('./lib')

// ilp-connector's own services, reached through the dependency container it is created with
// (`reduct`, its dependency): only the reference run uses this (see resyncRefused).
const connectorDir = path.dirname(require.resolve('ilp-connector/package.json'))
const RouteBroadcaster = require('ilp-connector/dist/services/route-broadcaster').default
function newContainer () {
  return require(require.resolve('reduct', { paths: [connectorDir] })).default()
}
const NO_TABLE = '00000000-0000-0000-0000-000000000000'

function args () {
  const out = { amount: 1000000000n, reference: true }
  const argv = process.argv.slice(2)
  for (let i = 0; i < argv.length; i++) {
    const key = argv[i]
    if (key === '--no-reference') out.reference = false
    else if (key === '--amount' && argv[i + 1] !== undefined) out.amount = BigInt(argv[++i])
    else throw new Error(`unknown argument ${key}`)
  }
  if (out.amount <= 0n) throw new Error('--amount must be positive')
  return out
}

// Our router's prices.
const RATES = { USD: '1', EUR: '1.08', XRP: '0.5' }
const HUGE = '1000000000000000000'
// A's children USD/9 → A (one-to-one) → link A–router EUR/6 → router → link router–B XRP/9 →
// B (one-to-one) → B's children XRP/9. The children's maxPacketAmount splits a payment of
// 10^9 into four packets.
const A_CHILD = { code: 'USD', scale: 9 }
const A_LINK = { code: 'EUR', scale: 6 }
const B_LINK = { code: 'XRP', scale: 9 }
const B_CHILD = { code: 'XRP', scale: 9 }
const MAX_PACKET = '300000000'
// A configured route in the middle connector, to its child `c` (which never connects): the
// middle advertises it to A and B like its own address, so their tables show what it sends
// for a configured prefix.
const C_PREFIX = 'test.c'
const A_TOKEN = 'a-token' // A presents it to the middle connector
const ROUTER_AT_B = 'router-at-b' // the middle connector presents it to B
const BUDGET_MS = 90000
// How long routes may take to arrive. Usually well under a second; an exchange that starts
// with a new link to our router may take one retry more (30 s): see resyncRefused.
const CONVERGE_MS = 10000
const FIRST_CONVERGE_MS = 40000
const CONNECT_TIMEOUT_MS = 10000
const PAY_TIMEOUT_MS = 10000

function withTimeout (promise, ms, what) {
  let timer
  const timeout = new Promise((resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} timed out after ${ms} ms`)), ms)
  })
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer))
}

/// Polls `check` (which returns a truthy value when done) every 50 ms until `ms` have passed;
/// returns { value, ms } or throws with `what` and the last value seen.
async function waitFor (what, ms, check) {
  const started = Date.now()
  let last
  for (;;) {
    try {
      last = await check()
    } catch (err) {
      last = { error: err.message }
    }
    if (last && !last.error && last.done !== false) return { value: last, ms: Date.now() - started }
    if (Date.now() - started > ms) throw new Error(`${what}: not within ${ms} ms (last seen: ${JSON.stringify(last)})`)
    await L.sleep(50)
  }
}

async function getJson (port, urlPath) {
  const res = await fetch(`http://127.0.0.1:${port}${urlPath}`, { signal: AbortSignal.timeout(2000) })
  if (!res.ok) throw new Error(`GET ${urlPath} on ${port}: HTTP ${res.status}`)
  return res.json()
}

/// A JS connector's own routing table (its admin API, `GET /routing`: localRoutingTable) as
/// { prefix: "<next hop> via <path>" }.
async function jsTable (side) {
  const status = await getJson(side.adminPort, '/routing')
  const table = {}
  for (const [prefix, route] of Object.entries(status.localRoutingTable)) {
    table[prefix] = `${route.nextHop || '(local)'} via ${route.path || '(none)'}`
  }
  return table
}

/// Our router's learned routes (`GET /routes`, source "learned") as
/// { prefix: "<peer> via <path>" }, with whether each is used.
async function routerLearned (adminPort) {
  const { routes } = await getJson(adminPort, '/routes')
  const table = {}
  for (const r of routes.filter(r => r.source === 'learned')) {
    table[r.prefix] = `${r.peer} via ${r.path.join(' ') || '(none)'}${r.used ? '' : ' (not used)'}`
  }
  return table
}

function show (table) {
  return Object.keys(table).sort().map(k => `${k}: ${table[k]}`).join('; ')
}

/// A difference between two tables, or null when equal.
function diff (expected, got) {
  const keys = [...new Set([...Object.keys(expected), ...Object.keys(got)])].sort()
  const lines = keys.filter(k => expected[k] !== got[k]).map(k => `${k}: expected ${expected[k] || '(none)'}, got ${got[k] || '(none)'}`)
  return lines.length ? lines.join('; ') : null
}

function childAccount (asset, port, secret) {
  return {
    relation: 'child',
    assetCode: asset.code,
    assetScale: asset.scale,
    balance: { maximum: HUGE },
    maxPacketAmount: MAX_PACKET,
    plugin: 'ilp-plugin-btp',
    options: { listener: { port, secret } }
  }
}

/// Connector A or B: a peer account `router` toward the middle connector (CCP on: the JS
/// defaults for a peer, sendRoutes and receiveRoutes true), two children (a STREAM sender and
/// a STREAM receiver), no configured route, and its admin API on loopback.
async function startSide (name, routerAccount, ports) {
  const child = name === 'a' ? A_CHILD : B_CHILD
  const link = name === 'a' ? A_LINK : B_LINK
  const adminPort = await L.freePort()
  const container = newContainer()
  const connector = await L.startJsConnector({
    container,
    ilpAddress: `test.${name}`,
    accounts: {
      router: Object.assign({
        relation: 'peer',
        assetCode: link.code,
        assetScale: link.scale,
        balance: { maximum: HUGE },
        plugin: 'ilp-plugin-btp'
      }, routerAccount),
      sender: childAccount(child, ports.sender, `${name}-sender-secret`),
      receiver: childAccount(child, ports.receiver, `${name}-receiver-secret`)
    },
    extra: { adminApi: true, adminApiHost: '127.0.0.1', adminApiPort: adminPort }
  })
  return { name, connector, adminPort, ports, child, container }
}

/// ilp-connector refuses a route control request (SYNC) that reaches it before its plugin's
/// `connect` event has registered the peer (F00 "cannot process route control messages from
/// non-peers"), and the refused side asks again only 30 s later (ccp-receiver.ts,
/// ROUTE_CONTROL_RETRY_INTERVAL). Between two JS connectors this happens when the side that
/// accepts the BTP connection sends its SYNC in the same breath as its auth answer: the
/// dialling side reads both at once. In the reference run, a connector whose receiver still
/// has no routing table from a peer after a second is made to ask again now (what it would do
/// by itself after 30 s). Returns the accounts it asked again.
async function resyncRefused (side) {
  const status = await getJson(side.adminPort, '/routing')
  const asked = []
  for (const [account, { receive }] of Object.entries(status.peers)) {
    if (!receive || receive.routingTableId !== NO_TABLE) continue
    const peer = side.container(RouteBroadcaster).peers.get(account)
    const receiver = peer && peer.getReceiver()
    if (receiver) {
      receiver.sendRouteControl()
      asked.push(`${side.label} → ${account}`)
    }
  }
  return asked
}

/// The STREAM receiver of a side (one STREAM server, totals per connection tag), a child of
/// the side's connector that learns test.<side>.receiver over its ILDCP; the senders (children
/// too, test.<side>.sender) come one per payment (newSender).
async function startEndpoints (side) {
  const receiverPlugin = new L.RecordingPlugin(L.btpClient(`btp+ws://:${side.name}-receiver-secret@127.0.0.1:${side.ports.receiver}`))
  await receiverPlugin.connect()
  const { createServer } = require('ilp-protocol-stream')
  const server = await createServer({ plugin: receiverPlugin, serverSecret: crypto.randomBytes(32) })
  const totals = new Map()
  server.on('connection', connection => {
    const tag = connection.connectionTag || ''
    connection.on('stream', stream => {
      stream.setReceiveMax(Infinity)
      stream.on('money', amount => totals.set(tag, (totals.get(tag) || 0n) + BigInt(amount)))
    })
  })
  side.endpoints = { receiverPlugin, server, totals, senders: [] }
}

/// A STREAM sender's link. STREAM disconnects its plugin when the connection closes; this one
/// stays connected until `close` instead, so that what the receiver still sends back (its
/// close frames) gets a prompt answer: to a disconnected child the JS connector answers only
/// when the Prepare expires, and our router would drain that for 30 s on stop.
class SenderPlugin extends L.RecordingPlugin {
  disconnect () { return Promise.resolve() }
  close () { return this.inner.disconnect() }
}

/// A fresh, connected sender link of `side` (its connector's BTP server serves the newest).
async function newSender (side) {
  const plugin = new SenderPlugin(L.btpClient(`btp+ws://:${side.name}-sender-secret@127.0.0.1:${side.ports.sender}`))
  side.endpoints.senders.push(plugin)
  await plugin.connect()
  return plugin
}

async function stopEndpoints (side) {
  if (!side.endpoints) return
  const { receiverPlugin, senders } = side.endpoints
  side.endpoints = null
  for (const plugin of senders) await plugin.close().catch(() => {})
  await receiverPlugin.disconnect().catch(() => {})
}

/// Every packet through the chain, as the rates say: A and B one-to-one by scale (rounded
/// down), our router exact (rounded down).
function convert (amount, from) {
  if (from === 'a') return L.jsOneToOne(L.routerConvert(L.jsOneToOne(amount, A_CHILD, A_LINK), A_LINK, B_LINK, RATES), B_LINK, B_CHILD)
  return L.jsOneToOne(L.routerConvert(L.jsOneToOne(amount, B_CHILD, B_LINK), B_LINK, A_LINK, RATES), A_LINK, A_CHILD)
}

const cmp = (a, b) => (a < b ? -1 : a > b ? 1 : 0)

/// One STREAM payment from `from`'s sender to `to`'s receiver. Returns { ok, line }.
async function pay (label, from, to, amount) {
  const tag = `${label.replace(/\W+/g, '-')}-${from.name}${to.name}`
  const senderPlugin = await newSender(from)
  const { server, totals, receiverPlugin } = to.endpoints
  const sentBefore = senderPlugin.sent.length
  const receivedBefore = receiverPlugin.received.length
  const receiverSentBefore = receiverPlugin.sent.length
  const credentials = server.generateAddressAndSecret({ connectionTag: tag })
  const problems = []
  const started = Date.now()
  let delivered = 0n
  let connection = null
  let learned = '-'
  try {
    const { createConnection } = require('ilp-protocol-stream')
    connection = await withTimeout(createConnection({ plugin: senderPlugin, ...credentials, slippage: 0.05 }),
      CONNECT_TIMEOUT_MS, 'STREAM connect')
    learned = `${connection.sourceAccount} → ${credentials.destinationAccount.split('.').slice(0, 3).join('.')}.…`
    const stream = connection.createStream()
    await withTimeout(stream.sendTotal(amount.toString(), { timeout: PAY_TIMEOUT_MS }), PAY_TIMEOUT_MS + 1000, 'sendTotal')
    delivered = BigInt(connection.totalDelivered)
    await withTimeout(connection.end(), 5000, 'connection.end').catch(err => problems.push(err.message))
  } catch (err) {
    problems.push(err.message)
    if (connection) connection.destroy().catch(() => {})
  }
  // The receiver's money events may trail the sender's view a little.
  const waitUntil = Date.now() + 1000
  while ((totals.get(tag) || 0n) !== delivered && Date.now() < waitUntil) await L.sleep(10)

  const sentPackets = senderPlugin.sent.slice(sentBefore)
  const sent = sentPackets.filter(p => p.fulfilled && p.amount > 0n).map(p => p.amount)
  const got = receiverPlugin.received.slice(receivedBefore).filter(p => p.fulfilled && p.amount > 0n).map(p => p.amount).sort(cmp)
  const expected = sent.map(a => convert(a, from.name)).sort(cmp)
  const paid = sent.reduce((s, a) => s + a, 0n)
  const expectedTotal = expected.reduce((s, a) => s + a, 0n)
  const received = totals.get(tag) || 0n
  if (problems.length === 0) {
    if (paid !== amount) problems.push(`sender paid ${paid}, asked for ${amount}`)
    if (expected.join(',') !== got.join(',')) problems.push(`per-packet amounts differ from the rates: expected ${expected.join(',')}, got ${got.join(',')}`)
    if (received !== expectedTotal) problems.push(`receiver's STREAM total ${received} != expected ${expectedTotal}`)
    if (delivered !== expectedTotal) problems.push(`sender's totalDelivered ${delivered} != expected ${expectedTotal}`)
    if (expectedTotal === 0n) problems.push('nothing was expected to arrive: amount too small')
  }
  const temporary = sentPackets.concat(receiverPlugin.sent.slice(receiverSentBefore)).filter(p => p.code && p.code[0] === 'T')
  if (temporary.length) {
    problems.push('T-class Rejects (STREAM retried them): ' +
      [...new Set(temporary.map(p => `${p.code} from ${p.triggeredBy} "${p.message}"`))].join(', '))
  }
  const ok = problems.length === 0
  const fromAsset = from.child
  const toAsset = to.child
  const line = `${label} ${from.name.toUpperCase()}→${to.name.toUpperCase()}: ${ok ? 'ok' : 'FAILED'} (${Date.now() - started} ms, ${learned},` +
    ` sent ${paid} ${fromAsset.code}/${fromAsset.scale} in ${sent.length} packet(s): ${sent.join(',')};` +
    ` received ${got.join(',')} = ${received} ${toAsset.code}/${toAsset.scale}; totalDelivered ${delivered})` +
    (ok ? '' : `: ${problems.join('; ')}`)
  L.log(line)
  return { ok, line, total: `${paid} ${fromAsset.code}/${fromAsset.scale} → ${received} ${toAsset.code}/${toAsset.scale}` }
}

/// The reference run: a JS connector `m` at test.router in our router's place, linked the
/// same way (A dials it as account `a`, it dials B as account `b`). Returns the converged
/// tables of m, A and B.
async function referenceRun () {
  const mPort = await L.freePort()
  const ports = {
    a: { sender: await L.freePort(), receiver: await L.freePort() },
    b: { sender: await L.freePort(), receiver: await L.freePort(), link: await L.freePort() }
  }
  const started = Date.now()
  const sides = []
  let m = null
  try {
    sides.push(await startSide('b', { options: { listener: { port: ports.b.link, secret: ROUTER_AT_B } } }, ports.b))
    const mAdmin = await L.freePort()
    const mContainer = newContainer()
    m = await L.startJsConnector({
      container: mContainer,
      ilpAddress: 'test.router',
      accounts: {
        a: {
          relation: 'peer',
          assetCode: A_LINK.code,
          assetScale: A_LINK.scale,
          balance: { maximum: HUGE },
          plugin: 'ilp-plugin-btp',
          options: { listener: { port: mPort, secret: A_TOKEN } }
        },
        b: {
          relation: 'peer',
          assetCode: B_LINK.code,
          assetScale: B_LINK.scale,
          balance: { maximum: HUGE },
          plugin: 'ilp-plugin-btp',
          options: { server: `btp+ws://router:${ROUTER_AT_B}@127.0.0.1:${ports.b.link}` }
        },
        // A child that never connects, behind a configured route (see C_PREFIX).
        c: {
          relation: 'child',
          assetCode: A_LINK.code,
          assetScale: A_LINK.scale,
          plugin: 'ilp-plugin-btp',
          options: { listener: { port: await L.freePort(), secret: 'c-token' } }
        }
      },
      routes: [{ targetPrefix: C_PREFIX, peerId: 'c' }],
      extra: { adminApi: true, adminApiHost: '127.0.0.1', adminApiPort: mAdmin }
    })
    sides.push(await startSide('a', { options: { server: `btp+ws://a:${A_TOKEN}@127.0.0.1:${mPort}` } }, ports.a))
    const [b, a] = sides
    const mSide = { adminPort: mAdmin, container: mContainer, label: 'middle' }
    a.label = 'A'
    b.label = 'B'
    let resynced = null
    const converged = await waitFor('reference run: A learns test.b and B learns test.a through the JS connector', CONVERGE_MS, async () => {
      const tables = { m: await jsTable(mSide), a: await jsTable(a), b: await jsTable(b) }
      const done = tables.a['test.b'] && tables.b['test.a'] && tables.m['test.a'] && tables.m['test.b']
      if (!done && !resynced && Date.now() - started > 1000) {
        resynced = [...await resyncRefused(mSide), ...await resyncRefused(a), ...await resyncRefused(b)]
        if (resynced.length) L.log(`reference run: route control requests refused in the connect race, asked again: ${resynced.join(', ')}`)
      }
      return { done: !!done, ...tables }
    })
    const { m: mTable, a: aTable, b: bTable } = converged.value
    // What the middle connector learned: its routes with a path (its own address, its child's
    // and its configured route have none).
    const learned = Object.fromEntries(Object.entries(mTable).filter(([, r]) => !r.endsWith(' via (none)')))
    L.log(`reference (JS connector in the middle) converged in ${Date.now() - started} ms:`)
    L.log(`  its table: ${show(mTable)}`)
    L.log(`  A's table: ${show(aTable)}`)
    L.log(`  B's table: ${show(bTable)}`)
    return { learned, a: aTable, b: bTable, ms: Date.now() - started }
  } finally {
    for (const s of sides.reverse()) await s.connector.shutdown().catch(() => {})
    if (m) await m.shutdown().catch(() => {})
  }
}

/// A Prepare of 0 to `destination`, sent straight on A's link to the router (past A's own
/// routing table), so that the router itself answers. Returns the answer.
async function probeThroughRouter (a, destination) {
  const prepare = IlpPacket.serializeIlpPrepare({
    amount: '0',
    executionCondition: crypto.randomBytes(32),
    expiresAt: new Date(Date.now() + 5000),
    destination,
    data: Buffer.from('probe')
  })
  const reply = await withTimeout(a.connector.getPlugin('router').sendData(prepare), 3000, 'probe')
  return reply[0] === IlpPacket.Type.TYPE_ILP_REJECT ? IlpPacket.deserializeIlpReject(reply) : { code: 'fulfill' }
}

async function main () {
  const opts = args()
  const t0 = Date.now()
  const failures = []
  let summary = null
  let router = null
  const sides = {}
  const budget = setTimeout(() => {
    console.log(`FAIL ccp-chain: not finished after ${BUDGET_MS} ms`)
    if (router) router.child.kill('SIGKILL')
    process.exit(1)
  }, BUDGET_MS)
  const check = (ok, what) => { if (!ok) { failures.push(what); L.log('FAIL', what) } }
  try {
    // 0. The reference connector's view of the same chain.
    const reference = opts.reference ? await referenceRun() : null

    // 1. Our router in the middle; no route to test.a or test.b is configured anywhere.
    const port = {
      routerBtp: await L.freePort(),
      admin: await L.freePort(),
      a: { sender: await L.freePort(), receiver: await L.freePort() },
      b: { sender: await L.freePort(), receiver: await L.freePort(), link: await L.freePort() }
    }
    const bAccount = { options: { listener: { port: port.b.link, secret: ROUTER_AT_B } } }
    sides.b = await startSide('b', bAccount, port.b)
    const t1 = Date.now()
    router = await L.startRouter({
      btpPort: port.routerBtp,
      config: `
ilp_address = "test.router"
[listen]
btp = "127.0.0.1:${port.routerBtp}"
[admin]
listen = "127.0.0.1:${port.admin}"
[limits]
reconnect_max_ms = 500                # B comes back in step 4: redial it soon
[[peers]]
name = "a"                            # dials us
relation = "peer"                     # CCP both ways (the defaults for a peer)
auth_tokens = ["${A_TOKEN}"]
asset_code = "${A_LINK.code}"
asset_scale = ${A_LINK.scale}
max_balance = "${HUGE}"
[[peers]]
name = "b"                            # we dial it
relation = "peer"
btp_url = "ws://127.0.0.1:${port.b.link}"
outgoing_token = "${ROUTER_AT_B}"
outgoing_username = "router"
btp_dial = "single"                   # ilp-plugin-btp keeps one connection per account
asset_code = "${B_LINK.code}"
asset_scale = ${B_LINK.scale}
max_balance = "${HUGE}"
[[peers]]
name = "c"                            # a child that never connects
relation = "child"
auth_tokens = ["c-token"]
asset_code = "${A_LINK.code}"
asset_scale = ${A_LINK.scale}
max_balance = "0"
[[routes]]
prefix = "${C_PREFIX}"                  # configured: advertised to A and B, not learned
peer = "c"
[rates]
${Object.entries(RATES).map(([k, v]) => `${k} = "${v}"`).join('\n')}
`
    })
    sides.a = await startSide('a', { options: { server: `btp+ws://a:${A_TOKEN}@127.0.0.1:${port.routerBtp}` } }, port.a)
    const { a, b } = sides

    // If a connector refused our router's first SYNC in the connect race (resyncRefused), the
    // router asks again after 30 s, as ilp-connector itself would.
    let diagnosed = false
    const converged = await waitFor('the router learns test.a and test.b, A learns test.b and B test.a', FIRST_CONVERGE_MS, async () => {
      const tables = { router: await routerLearned(port.admin), a: await jsTable(a), b: await jsTable(b) }
      const done = tables.a['test.b'] && tables.b['test.a'] && tables.router['test.a'] && tables.router['test.b']
      if (!done && !diagnosed && Date.now() - t1 > 3000) {
        // Slow: say who does not send to whom. A JS sender in mode IDLE toward `router` never
        // accepted our router's SYNC; a JS receiver with no table id never got an update.
        diagnosed = true
        for (const side of [a, b]) {
          const { peers } = await getJson(side.adminPort, '/routing')
          L.log(`still converging after 3 s: ${side.name.toUpperCase()}'s route exchange with the router: ${JSON.stringify(peers.router)}`)
        }
        L.log(`still converging after 3 s: the router's learned routes: ${show(tables.router)}`)
      }
      return { done: !!done, ...tables }
    })
    const sinceRouter = Date.now() - t1
    // A moment more, so that anything still on its way shows (and a table that would change
    // again is caught), then the tables again.
    await L.sleep(500)
    const tables = { router: await routerLearned(port.admin), a: await jsTable(a), b: await jsTable(b) }
    const exchange = await getJson(port.admin, '/routes')
    L.log(`with our router in the middle, converged ${converged.ms} ms after A was up (${sinceRouter} ms after the router's start):`)
    L.log(`  router's learned routes: ${show(tables.router)} (routing table ${exchange.route_exchange.routing_table_id}, epoch ${exchange.route_exchange.epoch})`)
    L.log(`  A's table: ${show(tables.a)}`)
    L.log(`  B's table: ${show(tables.b)}`)
    const expectedRouter = { 'test.a': 'a via test.a', 'test.b': 'b via test.b' }
    let d = diff(expectedRouter, tables.router)
    check(!d, `the router's learned routes: ${d}`)
    // What a JS connector in the router's place gives (the reference run): the far prefix with
    // the router's address first in its path, and the router's own address and its configured
    // prefix with path [test.router]: ilp-connector puts the speaker first in the path of
    // every route it sends (interledger-rs too, except for its own address, which it sends
    // with an empty path).
    for (const [side, far] of [['a', 'b'], ['b', 'a']]) {
      const want = {
        [`test.${far}`]: `router via test.router test.${far}`,
        'test.router': 'router via test.router',
        [C_PREFIX]: 'router via test.router'
      }
      for (const [prefix, route] of Object.entries(want)) {
        check(tables[side][prefix] === route, `${side.toUpperCase()}'s route to ${prefix}: expected ${route}, got ${tables[side][prefix] || '(none)'}`)
      }
    }
    if (reference) {
      d = diff(reference.learned, tables.router)
      check(!d, `the router's learned routes differ from the reference connector's table: ${d}`)
      d = diff(reference.a, tables.a)
      check(!d, `A's table differs from the reference run's: ${d}`)
      d = diff(reference.b, tables.b)
      check(!d, `B's table differs from the reference run's: ${d}`)
      if (!failures.length) L.log('the router\'s learned routes equal the reference connector\'s table; A\'s and B\'s tables equal the reference run\'s')
    }
    // A wrong table is reported, and the rest still runs where it can: the payments need only
    // the far prefixes to lead to the router.
    if (!tables.a['test.b'] || !tables.b['test.a']) throw new Error('A or B has no route to the other: not paying')

    // 2. STREAM payments both ways, over learned routes only.
    await startEndpoints(a)
    await startEndpoints(b)
    const payments = []
    for (const [from, to] of [[a, b], [b, a]]) {
      const r = await pay('learned', from, to, opts.amount)
      if (!r.ok) failures.push(r.line)
      payments.push(r.total)
    }

    // 3. B goes away: its endpoints first (so that nothing reconnects to the new B later),
    // then the connector; the router's link to it drops.
    const oldB = b.endpoints.server.generateAddressAndSecret({ connectionTag: 'after-withdrawal' })
    await stopEndpoints(b)
    const tDown = Date.now()
    await b.connector.shutdown()
    const gone = await waitFor('the router withdraws test.b', CONVERGE_MS, async () => {
      const learned = await routerLearned(port.admin)
      return { done: !learned['test.b'], learned }
    })
    const gonePassed = Date.now() - tDown
    L.log(`B stopped: the router no longer lists test.b after ${gonePassed} ms (its learned routes: ${show(gone.value.learned)})`)
    await waitFor('A drops test.b', CONVERGE_MS, async () => {
      const table = await jsTable(a)
      return { done: !table['test.b'], table }
    })
    const aGonePassed = Date.now() - tDown
    L.log(`A dropped test.b ${aGonePassed} ms after B stopped`)
    const probe = await probeThroughRouter(a, oldB.destinationAccount)
    L.log(`a Prepare through the router to ${oldB.destinationAccount.slice(0, 30)}…: ${probe.code} from ${probe.triggeredBy} "${probe.message}"`)
    check(probe.code === 'F02' && probe.triggeredBy === 'test.router',
      `after the withdrawal the router answered ${probe.code} from ${probe.triggeredBy}, expected F02 from test.router`)
    const senderPlugin = await newSender(a)
    let refused = null
    try {
      const { createConnection } = require('ilp-protocol-stream')
      const c = await withTimeout(createConnection({ plugin: senderPlugin, ...oldB, slippage: 0.05 }), 5000, 'STREAM connect')
      c.destroy().catch(() => {})
    } catch (err) {
      refused = err.message
    }
    // STREAM's first packets may also meet A's F08 (the child's maxPacketAmount), which it
    // handles by sending less; what ends the attempt must be F02, and nothing else may come.
    const rejects = senderPlugin.sent.filter(p => p.code && p.code !== 'F08')
    const seen = [...new Set(rejects.map(p => `${p.code} from ${p.triggeredBy} "${p.message}"`))].join(', ')
    L.log(`a payment A→B while B is away: ${refused ? `refused (${seen}): ${refused}` : 'connected!'}`)
    check(refused && rejects.length > 0 && rejects.every(p => p.code === 'F02'),
      `a payment towards the withdrawn test.b should fail with F02; got ${refused ? seen || refused : 'a connection'}`)
    const withdrawn = `withdrawn by the router ${gonePassed} ms and by A ${aGonePassed} ms after B stopped;` +
      ` then the router answered ${probe.code} and a payment from A's child got ${[...new Set(rejects.map(p => `${p.code} from ${p.triggeredBy}`))].join(', ')}`

    // 4. B comes back: a new connector on the same port (a new routing table id).
    const tUp = Date.now()
    sides.b = await startSide('b', bAccount, port.b)
    // The router dials B as soon as it listens and sends its SYNC at once: B may refuse it in
    // the connect race too (resyncRefused), and then the router asks again after 30 s.
    const back = await waitFor('the router learns test.b again and A has it again', FIRST_CONVERGE_MS, async () => {
      const learned = await routerLearned(port.admin)
      const table = await jsTable(a)
      return { done: learned['test.b'] === 'b via test.b' && table['test.b'] === 'router via test.router test.b', learned, a: table }
    })
    L.log(`B back: the router relearned test.b and A has it again after ${back.ms} ms (${Date.now() - tUp} ms with B's start)`)
    await startEndpoints(sides.b)
    for (const [from, to] of [[a, sides.b], [sides.b, a]]) {
      const r = await pay('B back', from, to, opts.amount)
      if (!r.ok) failures.push(r.line)
    }
    if (!failures.length) {
      summary = `PASS ccp-chain: test.a and test.b learned over CCP through the router` +
        (reference ? ' (tables equal to the reference JS connector\'s in its place)' : '') +
        `; STREAM ${payments.join(' and ')} as the rates say; test.b ${withdrawn};` +
        ` relearned ${back.ms} ms after B came back and paid both ways again`
    }
  } catch (err) {
    failures.push(err && err.message)
    L.log('FAIL', err && err.stack ? err.stack : err)
  } finally {
    // Our router first (it drains what it has in flight while the connectors still answer).
    if (router) {
      const result = await router.stop()
      if (result && result.code !== 0) failures.push(`router exit ${JSON.stringify(result)}`)
    }
    for (const side of Object.values(sides)) {
      await stopEndpoints(side)
      await side.connector.shutdown().catch(() => {})
    }
    clearTimeout(budget)
  }
  L.log(`finished in ${Date.now() - t0} ms`)
  if (failures.length) console.log(`FAIL ccp-chain: ${failures.length} failed: ${failures.join('; ')}`)
  else console.log(summary)
  process.exit(failures.length ? 1 : 0)
}

main()
