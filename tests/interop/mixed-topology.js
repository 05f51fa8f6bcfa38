'use strict'
// A mixed topology, STREAM payments both ways, round after round:
//
//   STREAM endpoints ─BTP─ JS connector A ═ILP over HTTP═ router ═BTP (B dials)═ JS connector B ─BTP─ STREAM endpoints
//
//   node mixed-topology.js [--rounds 20] [--order ba|ab|both] [--cores 2]
//                          [--idle-every 2] [--idle-ms aim | --idle-ms 6000[,5500,...]]
//                          [--idle-from round-end|a-answer] [--gap-ms 100]
//                          [--connect-timeout-ms 10000] [--pay-timeout-ms 10000]
//                          [--budget-ms 130000] [--max-packet 300000000] [--a-keepalive-ms N]
//
// ILP_ROUTER_BIN names the ilp-router binary (INTEROP_ROUTER_LOG_LEVEL=debug: its log level;
// INTEROP_DEBUG=1: every packet of the STREAM endpoints, and A's HTTP connections). Both JS
// connectors (`ilp-connector`, one-to-one backend) run in this process. A's account `router` is
// `ilp-plugin-http`: A POSTs its Prepares to our `[listen] http`, and our router POSTs the
// Prepares for A to A's server (`http_url`, from a keep-alive pool per core). B's account
// `router` is an `ilp-plugin-btp` client that dials our router. Each connector has two children
// on `ilp-plugin-btp` servers: a STREAM sender (a fresh plugin per payment) and a STREAM
// receiver (one server for the whole run).
//
// Every round pays B→A, then A→B (`--order ab`: the other way first; `both`: at the same
// time). Every `--idle-every`th round is preceded by an idle gap. Node 20's HTTP server closes
// a keep-alive connection keepAliveTimeout + 1 s after its last answer (5 s + 1 s: 6 s, while
// its `Keep-Alive: timeout=5` header says 5 s), so after the gap our router's pooled
// connection to A is closing or closed, and the first POST of the round must not be lost with
// it. With `--idle-ms aim` (the default) each gap is timed from A's last answer so that the
// round's first POST reaches A's server within a millisecond or two of its close (the close
// delay and the POST's delay after the gap are measured as the run goes): the race the fault
// report suspects. With `--idle-ms N[,N...]` the gaps are fixed (a list is used in turn),
// counted from the end of the previous round or, with `--idle-from a-answer`, from A's last
// answer. The other rounds follow `--gap-ms` after the previous one.
//
// A direction of a round fails when its STREAM connect (ONE attempt, no retry) does not
// succeed within `--connect-timeout-ms`, when the payment does not complete within
// `--pay-timeout-ms`, when the amounts do not add up (the sender paid exactly the amount,
// the receiver's connection got exactly the sender's totalDelivered, which is > 0), or when
// a Prepare of the payment (the sender's, or the receiver's STREAM frames back to it) got a
// T-class Reject (STREAM retries those silently, which would hide a transient "no link"
// just as a second connect attempt would). Rounds that cannot start before `--budget-ms` has
// passed count as failed ("not run"). Prints one line per round and direction, then `PASS …`
// last when every round passed, else a `FAIL …` line naming the rounds and directions that
// failed, and exits non-zero.

const L = require('./lib')

function args () {
  const out = {
    rounds: 20,
    idleEvery: 2,
    idleMs: 'aim',
    gapMs: 100,
    cores: 2,
    connectTimeoutMs: 10000,
    payTimeoutMs: 10000,
    budgetMs: 130000,
    order: 'ba',
    maxPacket: 300000000,
    // A's server's keepAliveTimeout (null: Node's default, 5000); Node closes an idle
    // connection 1000 ms after it.
    aKeepaliveMs: null,
    // What an idle gap counts from: the end of the previous round, or the last answer A's
    // server wrote (then it is exactly the time A's keep-alive connections sit idle).
    idleFrom: 'round-end'
  }
  const argv = process.argv.slice(2)
  for (let i = 0; i < argv.length; i += 2) {
    const [key, value] = [argv[i], argv[i + 1]]
    if (value === undefined) throw new Error(`${key} needs a value`)
    const n = Number(value)
    if (key === '--rounds') out.rounds = n
    else if (key === '--idle-every') out.idleEvery = n
    else if (key === '--idle-ms') out.idleMs = value === 'aim' ? 'aim' : value.split(',').map(Number)
    else if (key === '--gap-ms') out.gapMs = n
    else if (key === '--cores') out.cores = n
    else if (key === '--connect-timeout-ms') out.connectTimeoutMs = n
    else if (key === '--pay-timeout-ms') out.payTimeoutMs = n
    else if (key === '--budget-ms') out.budgetMs = n
    else if (key === '--order') out.order = value
    else if (key === '--max-packet') out.maxPacket = n
    else if (key === '--a-keepalive-ms') out.aKeepaliveMs = n
    else if (key === '--idle-from') out.idleFrom = value
    else throw new Error(`unknown argument ${key}`)
  }
  if (!['ab', 'ba', 'both'].includes(out.order)) throw new Error(`unknown order ${out.order}`)
  if (!['round-end', 'a-answer'].includes(out.idleFrom)) throw new Error(`unknown --idle-from ${out.idleFrom}`)
  for (const [k, v] of Object.entries(out)) {
    if (k === 'order' || k === 'idleFrom' || v === null || v === 'aim') continue
    for (const x of [].concat(v)) {
      if (!Number.isFinite(x) || x < 0) throw new Error(`bad value for ${k}: ${v}`)
    }
  }
  return out
}

// Our router's prices.
const RATES = { USD: '1', EUR: '1.08', XRP: '0.5' }
const HUGE = '1000000000000000000'

// Assets: A's children USD/9, the A–router link EUR/6, the router–B link XRP/9, B's children
// XRP/9. The children's maxPacketAmount (`--max-packet`) makes STREAM split each payment into
// a few packets.
const A_CHILD = { code: 'USD', scale: 9 }
const A_LINK = { code: 'EUR', scale: 6 }
const B_LINK = { code: 'XRP', scale: 9 }
const B_CHILD = { code: 'XRP', scale: 9 }
const AMOUNT = 1000000000n // per payment, in the sender's units

const A_TOKEN = 'a-token' // A presents it to our router (our auth_tokens)
const ROUTER_AT_A = 'router-at-a' // our router presents it to A
const B_TOKEN = 'b-token'

function withTimeout (promise, ms, what) {
  let timer
  const timeout = new Promise((resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} timed out after ${ms} ms`)), ms)
  })
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer))
}

function childAccount (asset, port, secret, maxPacket) {
  return {
    relation: 'child',
    assetCode: asset.code,
    assetScale: asset.scale,
    balance: { maximum: HUGE },
    maxPacketAmount: String(maxPacket),
    plugin: 'ilp-plugin-btp',
    options: { listener: { port, secret } }
  }
}

async function setup (opts, cleanup) {
  const port = {
    routerBtp: await L.freePort(),
    routerHttp: await L.freePort(),
    aHttp: await L.freePort(),
    aSender: await L.freePort(),
    aReceiver: await L.freePort(),
    bSender: await L.freePort(),
    bReceiver: await L.freePort()
  }
  const router = await L.startRouter({
    btpPort: port.routerBtp,
    cores: opts.cores,
    config: `
ilp_address = "test.router"
[listen]
btp = "127.0.0.1:${port.routerBtp}"
http = "127.0.0.1:${port.routerHttp}"
[[peers]]
name = "a"
relation = "peer"
send_routes = false                  # static routes on both sides: no CCP here
receive_routes = false
asset_code = "${A_LINK.code}"
asset_scale = ${A_LINK.scale}
max_balance = "${HUGE}"
auth_tokens = ["${A_TOKEN}"]
http_url = "http://127.0.0.1:${port.aHttp}/"
outgoing_token = "${ROUTER_AT_A}"
[[peers]]
name = "b"
relation = "peer"
send_routes = false                  # static routes on both sides: no CCP here
receive_routes = false
asset_code = "${B_LINK.code}"
asset_scale = ${B_LINK.scale}
max_balance = "${HUGE}"
auth_tokens = ["${B_TOKEN}"]
[[routes]]
prefix = "test.a"
peer = "a"
[[routes]]
prefix = "test.b"
peer = "b"
[rates]
${Object.entries(RATES).map(([k, v]) => `${k} = "${v}"`).join('\n')}
`
  })
  // Stopped first, while both connectors can still answer what it has in flight: it drains
  // its Prepares before it exits, and one whose next hop has gone would hold it until expiry.
  cleanup.router = () => router.stop()
  await L.waitForPort(port.routerHttp, 10000)

  const a = await L.startJsConnector({
    ilpAddress: 'test.a',
    accounts: {
      router: {
        relation: 'peer',
        sendRoutes: false,
        receiveRoutes: false,
        assetCode: A_LINK.code,
        assetScale: A_LINK.scale,
        balance: { maximum: HUGE },
        plugin: 'ilp-plugin-http',
        options: {
          incoming: { port: port.aHttp, staticToken: ROUTER_AT_A },
          outgoing: { url: `http://127.0.0.1:${port.routerHttp}/`, staticToken: A_TOKEN }
        }
      },
      sender: childAccount(A_CHILD, port.aSender, 'a-sender-secret', opts.maxPacket),
      receiver: childAccount(A_CHILD, port.aReceiver, 'a-receiver-secret', opts.maxPacket)
    },
    routes: [
      { targetPrefix: 'test.router', peerId: 'router' },
      { targetPrefix: 'test.b', peerId: 'router' }
    ]
  })
  cleanup.push(() => a.shutdown())
  // A's server, watched: the connections our router opens to it and how many it closed.
  // Node 20 closes a keep-alive connection keepAliveTimeout + 1 s after its last answer
  // (HTTP_SERVER_KEEP_ALIVE_TIMEOUT_BUFFER) and sends `Keep-Alive: timeout=5`. `idle` notes,
  // for each request after more than 1 s of quiet, how long A's server had been idle and
  // whether it came on the connection of the last answer or a new one; `closeDelays`, how
  // long after its last answer it closed an idle connection.
  const aServer = a.getPlugin('router')._httpServer
  if (opts.aKeepaliveMs !== null) aServer.keepAliveTimeout = opts.aKeepaliveMs
  L.log(`A's HTTP server: keepAliveTimeout ${aServer.keepAliveTimeout} ms`)
  const aConnections = { opened: 0, closed: 0, lastAnswerAt: Date.now(), lastSocket: null, idle: [], closeDelays: [] }
  aServer.on('request', (req, res) => {
    const idle = Date.now() - aConnections.lastAnswerAt
    if (idle > 1000) aConnections.idle.push({ idle, reused: req.socket === aConnections.lastSocket })
    res.once('finish', () => {
      aConnections.lastAnswerAt = Date.now()
      aConnections.lastSocket = req.socket
    })
  })
  aServer.on('connection', socket => {
    aConnections.opened++
    const n = aConnections.opened
    if (process.env.INTEROP_DEBUG) L.log(`A's server: connection ${n} from port ${socket.remotePort} opened`)
    socket.once('close', () => {
      aConnections.closed++
      const quiet = Date.now() - aConnections.lastAnswerAt
      if (socket === aConnections.lastSocket && quiet > 1000) aConnections.closeDelays.push(quiet)
      if (process.env.INTEROP_DEBUG) L.log(`A's server: connection ${n} closed`)
    })
  })

  const b = await L.startJsConnector({
    ilpAddress: 'test.b',
    accounts: {
      router: {
        relation: 'peer',
        sendRoutes: false,
        receiveRoutes: false,
        assetCode: B_LINK.code,
        assetScale: B_LINK.scale,
        balance: { maximum: HUGE },
        plugin: 'ilp-plugin-btp',
        options: { server: `btp+ws://b:${B_TOKEN}@127.0.0.1:${port.routerBtp}` }
      },
      sender: childAccount(B_CHILD, port.bSender, 'b-sender-secret', opts.maxPacket),
      receiver: childAccount(B_CHILD, port.bReceiver, 'b-receiver-secret', opts.maxPacket)
    },
    routes: [
      { targetPrefix: 'test.router', peerId: 'router' },
      { targetPrefix: 'test.a', peerId: 'router' }
    ]
  })
  cleanup.push(() => b.shutdown())

  const deadline = Date.now() + 10000
  while (!b.getPlugin('router').isConnected()) {
    if (Date.now() > deadline) throw new Error('B did not connect to the router')
    await L.sleep(50)
  }

  // The receivers: one STREAM server each for the whole run, totals per connection tag.
  const receivers = {}
  for (const [side, p, secret] of [['A', port.aReceiver, 'a-receiver-secret'], ['B', port.bReceiver, 'b-receiver-secret']]) {
    const plugin = new L.RecordingPlugin(L.btpClient(`btp+ws://:${secret}@127.0.0.1:${p}`))
    await plugin.connect()
    cleanup.push(() => plugin.disconnect())
    const { createServer } = require('ilp-protocol-stream')
    const server = await createServer({ plugin, serverSecret: require('crypto').randomBytes(32) })
    const totals = new Map()
    server.on('connection', connection => {
      const tag = connection.connectionTag || ''
      connection.on('stream', stream => {
        stream.setReceiveMax(Infinity)
        stream.on('money', amount => { totals.set(tag, (totals.get(tag) || 0n) + BigInt(amount)) })
      })
    })
    receivers[side] = { server, totals, plugin }
  }
  const senders = {
    A: `btp+ws://:a-sender-secret@127.0.0.1:${port.aSender}`,
    B: `btp+ws://:b-sender-secret@127.0.0.1:${port.bSender}`
  }
  const open = new Set()
  cleanup.push(() => Promise.all([...open].map(p => p.close())))
  return { receivers, senders, open, aConnections, aKeepAliveTimeout: aServer.keepAliveTimeout }
}

/// A STREAM sender's link to its connector. STREAM disconnects it as soon as its connection
/// closes; it stays connected until cleanup instead, so that what the receiver still sends
/// back (its close frame) gets a prompt answer: to a disconnected child the JS connector
/// answers only when the Prepare expires, and our router would drain that for 30 s on stop.
class SenderPlugin extends L.RecordingPlugin {
  disconnect () { return Promise.resolve() }
  close () { return this.inner.disconnect() }
}

/// A fresh, connected sender plugin for `from` (the connector's BTP server serves the newest).
async function newSender (env, from) {
  const plugin = new SenderPlugin(L.btpClient(env.senders[from]))
  env.open.add(plugin)
  await plugin.connect()
  return plugin
}

/// One payment from `from` to the other side, on `plugin` if given (connected before an idle
/// gap, so that the payment's first packet follows the gap closely). Returns { ok, line }.
async function pay (opts, env, round, from, plugin = null) {
  const to = from === 'A' ? 'B' : 'A'
  const opened = env.aConnections.opened
  const tag = `r${round}${from}${to}`
  const { server, totals, plugin: receiverPlugin } = env.receivers[to]
  // What the receiver sends back to the sender (STREAM frames in Prepares) counts too.
  const receiverSentBefore = receiverPlugin.sent.length
  const credentials = server.generateAddressAndSecret({ connectionTag: tag })
  if (!plugin) plugin = await newSender(env, from)
  const problems = []
  const started = Date.now()
  let connectMs = null
  let payMs = null
  let delivered = 0n
  let connection = null
  try {
    const { createConnection } = require('ilp-protocol-stream')
    connection = await withTimeout(
      createConnection({ plugin, ...credentials, slippage: 0.05 }),
      opts.connectTimeoutMs, 'STREAM connect (one attempt)')
    connectMs = Date.now() - started
    const stream = connection.createStream()
    await withTimeout(stream.sendTotal(AMOUNT.toString(), { timeout: opts.payTimeoutMs }),
      opts.payTimeoutMs + 1000, 'sendTotal')
    payMs = Date.now() - started - connectMs
    delivered = BigInt(connection.totalDelivered)
    await withTimeout(connection.end(), 5000, 'connection.end').catch(err => {
      problems.push(err.message)
    })
  } catch (err) {
    problems.push(err.message)
    if (connection) connection.destroy().catch(() => {})
  }
  if (problems.length) {
    // Stop whatever STREAM is still trying on it.
    await plugin.close().catch(() => {})
    env.open.delete(plugin)
  }
  // Money frames may trail the sender's view by a moment.
  const waitUntil = Date.now() + 500
  while ((totals.get(tag) || 0n) !== delivered && Date.now() < waitUntil) await L.sleep(10)

  const paid = plugin.sent.filter(p => p.fulfilled).reduce((s, p) => s + p.amount, 0n)
  const packets = plugin.sent.filter(p => p.fulfilled && p.amount > 0n).length
  const received = totals.get(tag) || 0n
  const temporary = plugin.sent.concat(receiverPlugin.sent.slice(receiverSentBefore))
    .filter(p => p.code && p.code[0] === 'T')
  if (problems.length === 0) {
    if (paid !== AMOUNT) problems.push(`sender paid ${paid}, asked for ${AMOUNT}`)
    if (delivered === 0n) problems.push('nothing delivered')
    if (received !== delivered) problems.push(`receiver got ${received}, sender's totalDelivered ${delivered}`)
  }
  if (temporary.length) {
    const counts = {}
    for (const p of temporary) {
      const key = `${p.code} from ${p.triggeredBy} "${p.message}"`
      counts[key] = (counts[key] || 0) + 1
    }
    problems.push('T-class Rejects (STREAM retried them): ' +
      Object.entries(counts).map(([k, n]) => `${n}× ${k}`).join(', '))
  }
  const rejects = plugin.sent.filter(p => p.code).map(p => p.code)
  const rejectNote = rejects.length ? `, rejects ${[...new Set(rejects)].map(c => `${c}×${rejects.filter(x => x === c).length}`).join(' ')}` : ''
  const ok = problems.length === 0
  const line = `round ${round} ${from}→${to}: ${ok ? 'ok' : 'FAILED'}` +
    ` (connect ${connectMs === null ? '-' : connectMs + ' ms'}, pay ${payMs === null ? '-' : payMs + ' ms'},` +
    ` ${packets} packet(s), paid ${paid}, delivered ${delivered}, received ${received}${rejectNote}` +
    `, router→A connections opened ${env.aConnections.opened - opened})` +
    (ok ? '' : `: ${problems.join('; ')}`)
  return { ok, line }
}

/// The next aimed idle gap: the first POST of the round should reach A's server when A's
/// server closes the connection our router keeps to it (Node 20: keepAliveTimeout + 1 s after
/// the last answer, as measured in this run), give or take a millisecond or two.
function aimAt (env, aim, i) {
  const median = xs => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]
  const closes = env.aConnections.closeDelays
  const close = closes.length ? median(closes.slice(-5)) : env.aKeepAliveTimeout + 1000
  const offset = aim.offsets.length ? median(aim.offsets.slice(-5)) : 15
  const target = close + [0, 1, -1, 2, 0, 1][i % 6]
  return { gap: target - offset, target, close, offset }
}

function describe (opts) {
  const order = { ab: 'A→B then B→A', ba: 'B→A then A→B', both: 'A→B and B→A at once' }[opts.order]
  const nth = n => n + ({ 1: 'st', 2: 'nd', 3: 'rd' }[n % 100 > 10 && n % 100 < 14 ? 0 : n % 10] || 'th')
  const every = opts.idleEvery === 1 ? 'every round' : `every ${nth(opts.idleEvery)} round`
  return `${opts.rounds} rounds ${order} (A over ILP over HTTP, B over BTP, router on ${opts.cores} core(s), ` +
    (opts.idleMs === 'aim'
      ? `idle before ${every} until A's server closes its keep-alive connections`
      : `idle ${opts.idleMs.join('/')} ms before ${every}` +
        `${opts.idleFrom === 'a-answer' ? ' counted from A\'s last answer' : ''}`) +
    `${opts.aKeepaliveMs === null ? '' : `, A's keep-alive timeout ${opts.aKeepaliveMs} ms`})`
}

async function main () {
  const opts = args()
  const cleanup = []
  const failures = []
  let failed = false
  let summary = null
  const t0 = Date.now()
  try {
    const env = await setup(opts, cleanup)
    L.log(`setup done in ${Date.now() - t0} ms; ${describe(opts)}`)
    let idleIndex = 0
    const aim = { offsets: [] }
    for (let round = 1; round <= opts.rounds; round++) {
      let gap = opts.gapMs
      let aimed = null
      const idleRound = round > 1 && opts.idleEvery > 0 && round % opts.idleEvery === 0
      if (idleRound && opts.idleMs === 'aim') {
        aimed = aimAt(env, aim, idleIndex++)
        gap = aimed.gap
      } else if (idleRound) {
        gap = opts.idleMs[idleIndex++ % opts.idleMs.length]
      }
      if (Date.now() - t0 + gap > opts.budgetMs) {
        for (let r = round; r <= opts.rounds; r++) failures.push(`${r} not run`)
        L.log(`round ${round}: the budget of ${opts.budgetMs} ms is spent; rounds ${round}..${opts.rounds} not run`)
        break
      }
      const first = { ab: 'A', ba: 'B', both: null }[opts.order]
      const ready = first && await newSender(env, first)
      let slept = null
      if (round > 1) {
        const fromAnswer = aimed || opts.idleFrom === 'a-answer'
        if (aimed) L.log(`round ${round}: idle for ${gap} ms from A's last answer, aiming the first POST at ${aimed.target} ms (A's server closes after ${aimed.close} ms; the POST follows ${aimed.offset} ms after the gap)`)
        else if (gap >= 1000) L.log(`round ${round}: idle for ${gap} ms (from the ${fromAnswer ? 'a-answer' : 'round-end'})`)
        const from = fromAnswer ? env.aConnections.lastAnswerAt : Date.now()
        await L.sleep(Math.max(0, from + gap - Date.now()))
        slept = Date.now() - env.aConnections.lastAnswerAt
      }
      const idleSeen = env.aConnections.idle.length
      const record = (from, { ok, line }) => {
        L.log(line)
        if (!ok) failures.push(`${round} ${from}→${from === 'A' ? 'B' : 'A'}${slept !== null && slept >= 1000 ? ` (after ${slept} ms idle)` : ''}`)
      }
      const noteIdle = () => {
        for (const { idle, reused } of env.aConnections.idle.slice(idleSeen)) {
          L.log(`round ${round}: A's server got the router's first request after ${idle} ms idle, on ${reused ? 'the same connection' : 'a new connection'}`)
        }
      }
      if (opts.order === 'both') {
        const [ab, ba] = await Promise.all([pay(opts, env, round, 'A'), pay(opts, env, round, 'B')])
        record('A', ab)
        record('B', ba)
      } else {
        for (const from of opts.order === 'ab' ? ['A', 'B'] : ['B', 'A']) {
          record(from, await pay(opts, env, round, from, from === first ? ready : null))
        }
      }
      noteIdle()
      // The first request's delay past the gap, for the next aim (a request lost in the race
      // is never seen; the retry on a new connection comes much later and is left out).
      const sample = env.aConnections.idle[idleSeen]
      if (aimed && sample && slept !== null && (sample.reused || sample.idle < aimed.close + 30)) {
        aim.offsets.push(sample.idle - slept)
      }
    }
    L.log(`router→A connections: ${env.aConnections.opened} opened, ${env.aConnections.closed} closed`)
    if (failures.length) failed = true
    else summary = `PASS mixed-topology: ${describe(opts)}; every payment on its first STREAM connect, no T-class Reject`
  } catch (err) {
    failed = true
    failures.push(`setup: ${err && err.message}`)
    L.log('FAIL', err && err.stack ? err.stack : err)
  } finally {
    // STREAM's closing packets (the receiver's close frame back to the sender) may still be
    // on their way.
    await L.sleep(500)
    const steps = cleanup.router ? [cleanup.router, ...cleanup.reverse()] : cleanup.reverse()
    for (const step of steps) {
      try {
        const result = await step()
        if (result && result.code !== undefined && result.code !== 0) {
          failed = true
          failures.push(`router exit ${JSON.stringify(result)}`)
        }
      } catch (err) {
        L.log('cleanup:', err.message)
      }
    }
  }
  L.log(`finished in ${Date.now() - t0} ms`)
  // Printed last, after the router and the connectors have stopped.
  if (failed) console.log(`FAIL mixed-topology: ${failures.length} failed: ${failures.join(', ')}`)
  else console.log(summary)
  process.exit(failed ? 1 : 0)
}

main()
