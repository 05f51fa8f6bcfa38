'use strict'
// Real STREAM payments between our router and interledger-rs's `ilp-node`, linked by ILP over
// HTTP, both ways:
//
//   to-ilp-node:   JS STREAM sender ─BTP─ router ═ILP over HTTP═ ilp-node (its built-in STREAM receiver, account bob)
//   from-ilp-node: ilp-node (account alice: POST /accounts/alice/payments, SPSP + STREAM) ═ILP over HTTP═ router ─BTP─ JS STREAM receiver
//
//   node ilp-node.js [--direction both|to-ilp-node|from-ilp-node] [--amount N] [--from-amount N]
//                    [--routes static|ccp]
//
// With `--routes static` (the default) each side has a static route to the other, and the route
// exchange is off on our side (`send_routes`/`receive_routes` false). With `--routes ccp`
// neither has one: our router must learn test.irs from ilp-node over CCP (its `GET /routes`
// shows it learned from `irs`), and ilp-node test.router from our router (its account `router`
// has no ILP address of its own, so its `GET /routes` can only have test.router from CCP);
// then the same payments, over the learned routes.
//
// ILP_ROUTER_BIN names the ilp-router binary and ILP_NODE_BIN the ilp-node binary (see the
// README for how to build it); `redis-server` must be on PATH (or REDIS_SERVER names it).
// Everything listens on loopback, on free ports picked at start: a fresh Redis (no
// persistence) for ilp-node, ilp-node itself, and our router. ilp-node's accounts and rates
// are set through its HTTP admin API. INTEROP_DEBUG=1 logs every packet of the JS STREAM
// endpoints; ILP_NODE_LOG sets ilp-node's RUST_LOG (default: warnings only).
//
// Exit 0 and a last line "PASS ..." when every direction paid exactly the amount asked for
// and every packet arrived as the rates say.

const { spawn } = require('child_process')
const crypto = require('crypto')
const fs = require('fs')
const http = require('http')
const os = require('os')
const path = require('path')
const L = require('./lib')

function args () {
  const out = { direction: 'both', amount: 1000000000n, fromAmount: 1000000n, routes: 'static' }
  const argv = process.argv.slice(2)
  for (let i = 0; i < argv.length; i += 2) {
    const [key, value] = [argv[i], argv[i + 1]]
    if (value === undefined) throw new Error(`${key} needs a value`)
    if (key === '--direction') out.direction = value
    else if (key === '--amount') out.amount = BigInt(value)
    else if (key === '--from-amount') out.fromAmount = BigInt(value)
    else if (key === '--routes') out.routes = value
    else throw new Error(`unknown argument ${key}`)
  }
  if (!['both', 'to-ilp-node', 'from-ilp-node'].includes(out.direction)) throw new Error(`unknown direction ${out.direction}`)
  if (!['static', 'ccp'].includes(out.routes)) throw new Error(`unknown --routes ${out.routes}`)
  return out
}

// Our router's prices (exact rationals). ilp-node gets the same prices through PUT /rates, but
// converts in f64: the accounts on ilp-node all use EUR and differ only in scale, upward, so its
// conversions are exact multiplications by a power of ten.
const RATES = { USD: '1', EUR: '1.08', XRP: '0.5' }
const HUGE = '1000000000000000000'

// Assets. To ilp-node: sender XRP/6 → router → link EUR/6 → ilp-node → bob EUR/9.
// From ilp-node: alice EUR/4 → ilp-node → link EUR/6 → router → receiver XRP/9.
const SENDER = { code: 'XRP', scale: 6 }
const LINK = { code: 'EUR', scale: 6 }
const BOB = { code: 'EUR', scale: 9 }
const ALICE = { code: 'EUR', scale: 4 }
const RECEIVER = { code: 'XRP', scale: 9 }
// The largest Prepare the sender may send to our router, and ilp-node to our router (in the
// link's units): STREAM on either side learns it from our F08 and splits the payment.
const SENDER_MAX_PACKET = '300000000'
const IRS_MAX_PACKET = '30000000'

// Tokens on the HTTP link: ilp-node presents IRS_TOKEN to our router (our auth_tokens), our
// router presents ROUTER_TOKEN to ilp-node (its account `router`'s incoming token).
const IRS_TOKEN = 'irs-token'
const ROUTER_TOKEN = 'router-at-irs'
const ADMIN_TOKEN = 'admin-token'

function nodeBinary () {
  const bin = process.env.ILP_NODE_BIN
  if (!bin) throw new Error('set ILP_NODE_BIN to the ilp-node binary (see README.md)')
  if (!fs.existsSync(bin)) throw new Error(`ILP_NODE_BIN=${bin} does not exist`)
  return bin
}

/// A child process with its output prefixed on our stdout; `stop()` sends SIGTERM, then
/// SIGKILL after `killAfterMs`, and resolves with how it exited.
function startChild (name, bin, argv, opts = {}) {
  L.log(`starting ${name}: ${bin} ${argv.join(' ')}`)
  const child = spawn(bin, argv, Object.assign({ stdio: ['ignore', 'pipe', 'pipe'] }, opts))
  let exited = null
  const exitedPromise = new Promise(resolve => {
    child.on('exit', (code, signal) => {
      exited = exited || { code, signal }
      resolve(exited)
    })
    // A process that could not start (no such file) may never emit 'exit'.
    child.on('error', err => {
      L.log(`${name}: ${err.message}`)
      if (child.pid === undefined) {
        exited = exited || { error: err.message }
        resolve(exited)
      }
    })
  })
  for (const stream of [child.stdout, child.stderr]) {
    let buffered = ''
    stream.on('data', chunk => {
      buffered += chunk
      const lines = buffered.split('\n')
      buffered = lines.pop()
      for (const line of lines) if (line.trim()) console.log(`[${name}] ${line}`)
    })
  }
  return {
    child,
    exited: () => exited,
    async stop (killAfterMs = 5000) {
      if (exited) return exited
      child.kill('SIGTERM')
      const timer = setTimeout(() => child.kill('SIGKILL'), killAfterMs)
      const result = await exitedPromise
      clearTimeout(timer)
      return result
    }
  }
}

async function waitForChildPort (proc, name, port, timeoutMs) {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if (proc.exited()) throw new Error(`${name} exited early: ${JSON.stringify(proc.exited())}`)
    try {
      await L.waitForPort(port, 200)
      return
    } catch (_) {}
  }
  throw new Error(`${name} does not listen on 127.0.0.1:${port} after ${timeoutMs} ms`)
}

/// A request to ilp-node's HTTP API with a bearer token; resolves with the response's text and
/// throws on a status other than 2xx. Bounded by `timeoutMs`.
async function api (port, method, urlPath, token, body, timeoutMs = 10000) {
  const res = await fetch(`http://127.0.0.1:${port}${urlPath}`, {
    method,
    headers: Object.assign({ Authorization: `Bearer ${token}` }, body === undefined ? {} : { 'Content-Type': 'application/json' }),
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(timeoutMs)
  })
  const text = await res.text()
  if (!res.ok) throw new Error(`ilp-node ${method} ${urlPath}: HTTP ${res.status}: ${text}`)
  return text
}

/// Big integers out of ilp-node's JSON without going through f64: the value of `"key":123`.
function jsonInteger (text, key) {
  const m = new RegExp(`"${key}"\\s*:\\s*"?(\\d+)`).exec(text)
  if (!m) throw new Error(`no integer "${key}" in ${text}`)
  return BigInt(m[1])
}

const sum = list => list.reduce((a, b) => a + b, 0n)
const sorted = list => [...list].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))

/// The payment notifications ilp-node sends for an account (WebSocket
/// /accounts/:username/payments/incoming): one per packet with an amount, in the account's units.
async function paymentNotifications (port, username) {
  const btpDir = path.dirname(require.resolve('ilp-plugin-btp'))
  const WebSocket = require(require.resolve('ws', { paths: [btpDir] }))
  const ws = new WebSocket(`ws://127.0.0.1:${port}/accounts/${username}/payments/incoming`, {
    headers: { Authorization: `Bearer ${ADMIN_TOKEN}` }
  })
  const amounts = []
  ws.on('message', data => {
    const text = data.toString()
    if (process.env.INTEROP_DEBUG) L.log(`ilp-node notification: ${text}`)
    const amount = jsonInteger(text, 'amount')
    if (amount > 0n) amounts.push(amount)
  })
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('ilp-node payment notifications: no WebSocket after 5 s')), 5000)
    ws.once('open', () => { clearTimeout(timer); resolve() })
    ws.once('error', err => { clearTimeout(timer); reject(err) })
  })
  return { amounts, close: () => ws.terminate() }
}

async function setup (opts, cleanup) {
  const nodeBin = nodeBinary()
  const ccp = opts.routes === 'ccp'
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ilp-node-interop-'))
  cleanup.push(() => fs.rmSync(dir, { recursive: true, force: true }))
  const [redisPort, nodePort, settlementPort, routerPort, routerHttpPort, routerAdminPort] =
    [await L.freePort(), await L.freePort(), await L.freePort(), await L.freePort(), await L.freePort(), await L.freePort()]

  // Redis for ilp-node: its own, empty, with no persistence, as our child.
  const redis = startChild('redis', process.env.REDIS_SERVER || 'redis-server', [
    '--port', String(redisPort), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no',
    '--dir', dir, '--loglevel', 'warning'
  ])
  cleanup.push(() => redis.stop())
  await waitForChildPort(redis, 'redis-server', redisPort, 10000)

  // ilp-node, configured by a JSON file. Its environment loses every ILP_* variable: ilp-node
  // reads ILP_<KEY> as configuration, and takes it over the file.
  const config = {
    ilp_address: 'test.irs',
    secret_seed: crypto.randomBytes(32).toString('hex'),
    admin_auth_token: ADMIN_TOKEN,
    database_url: `redis://127.0.0.1:${redisPort}/`,
    http_bind_address: `127.0.0.1:${nodePort}`,
    settlement_api_bind_address: `127.0.0.1:${settlementPort}`,
    exchange_rate: { spread: 0 }
  }
  // Its route updates go out every 30 s by default (to Peer accounts, asked or not): every
  // second instead, so that our router hears from it soon after its account exists.
  if (ccp) config.route_broadcast_interval = 1000
  const configFile = path.join(dir, 'ilp-node.json')
  fs.writeFileSync(configFile, JSON.stringify(config, null, 2))
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('ILP_')))
  env.RUST_LOG = process.env.ILP_NODE_LOG || 'warn'
  let node = startChild('ilp-node', nodeBin, [configFile], { env })
  cleanup.push(() => node.stop())
  await waitForChildPort(node, 'ilp-node', nodePort, 20000)

  // Our router: ilp-node is the peer `irs` over ILP over HTTP both ways; the JS STREAM endpoints
  // are BTP children.
  const router = await L.startRouter({
    btpPort: routerPort,
    config: `
ilp_address = "test.router"
[listen]
btp = "127.0.0.1:${routerPort}"
http = "127.0.0.1:${routerHttpPort}"
[admin]
listen = "127.0.0.1:${routerAdminPort}"
[[peers]]
name = "irs"
relation = "peer"
${ccp ? '# route exchange both ways: the defaults for a peer' : `send_routes = false                   # static routes: no CCP with ilp-node
receive_routes = false`}
asset_code = "${LINK.code}"
asset_scale = ${LINK.scale}
max_balance = "${HUGE}"
max_packet_amount = "${IRS_MAX_PACKET}"
auth_tokens = ["${IRS_TOKEN}"]
http_url = "http://127.0.0.1:${nodePort}/accounts/router/ilp"
outgoing_token = "${ROUTER_TOKEN}"
[[peers]]
name = "sender"
auth_tokens = ["sender-token"]
relation = "child"
asset_code = "${SENDER.code}"
asset_scale = ${SENDER.scale}
max_balance = "${HUGE}"
max_packet_amount = "${SENDER_MAX_PACKET}"
[[peers]]
name = "receiver"
auth_tokens = ["receiver-token"]
relation = "child"
asset_code = "${RECEIVER.code}"
asset_scale = ${RECEIVER.scale}
max_balance = "${HUGE}"
${ccp ? '' : `[[routes]]
prefix = "test.irs"
peer = "irs"`}
[rates]
${Object.entries(RATES).map(([k, v]) => `${k} = "${v}"`).join('\n')}
`
  })
  cleanup.push(async () => {
    const result = await router.stop()
    if (result.code !== 0) throw new Error(`router exited with ${JSON.stringify(result)}`)
  })
  await L.waitForPort(routerHttpPort, 10000)

  // ilp-node's side: prices, the account `router` (a Peer at test.router, ILP over HTTP to our
  // [listen] http; interledger-rs's own path form, which our router accepts like any path),
  // and its local users bob (receives) and alice (pays).
  await api(nodePort, 'PUT', '/rates', ADMIN_TOKEN, Object.fromEntries(Object.entries(RATES).map(([k, v]) => [k, Number(v)])))
  // With --routes ccp the account has no ilp_address: ilp-node then gives it
  // test.irs.router, and its route to test.router can only come from our router's CCP.
  await api(nodePort, 'POST', '/accounts', ADMIN_TOKEN, Object.assign(ccp ? {} : { ilp_address: 'test.router' }, {
    username: 'router',
    asset_code: LINK.code,
    asset_scale: LINK.scale,
    routing_relation: 'Peer',
    ilp_over_http_url: `http://127.0.0.1:${routerHttpPort}/accounts/irs/ilp`,
    ilp_over_http_incoming_token: ROUTER_TOKEN,
    ilp_over_http_outgoing_token: IRS_TOKEN
  }))
  for (const [username, asset] of [['bob', BOB], ['alice', ALICE]]) {
    await api(nodePort, 'POST', '/accounts', ADMIN_TOKEN, {
      username,
      asset_code: asset.code,
      asset_scale: asset.scale,
      ilp_over_http_incoming_token: `${username}-token`
    })
  }
  L.log(`ilp-node accounts: ${(await api(nodePort, 'GET', '/accounts', ADMIN_TOKEN)).length} bytes of JSON; routes: ${await api(nodePort, 'GET', '/routes', ADMIN_TOKEN)}`)
  let routes = null
  if (ccp) {
    // ilp-node asks its peers for their routes (a route control request, SYNC) only when it
    // starts, and its account `router` did not exist then: restart it (Redis keeps the
    // accounts; the prices, which it keeps in memory, are set again) so that it asks our
    // router. Our router asked ilp-node at its own start, before the account existed (ilp-node
    // refused; the router asks again after 30 s), and takes the updates ilp-node sends its
    // Peer accounts every second unasked, which bring it test.irs.
    await node.stop()
    node = startChild('ilp-node', nodeBin, [configFile], { env })
    await waitForChildPort(node, 'ilp-node', nodePort, 20000)
    await api(nodePort, 'PUT', '/rates', ADMIN_TOKEN, Object.fromEntries(Object.entries(RATES).map(([k, v]) => [k, Number(v)])))
    routes = await learnedRoutes(nodePort, routerAdminPort)
  }
  return { nodePort, routerPort, routes }
}

/// Waits (at most 20 s) until our router has learned test.irs from `irs` and ilp-node
/// test.router from its account `router`; returns what each shows.
async function learnedRoutes (nodePort, routerAdminPort) {
  const started = Date.now()
  let ours = []
  let theirs = {}
  for (;;) {
    try {
      const res = await fetch(`http://127.0.0.1:${routerAdminPort}/routes`, { signal: AbortSignal.timeout(2000) })
      ours = (await res.json()).routes.filter(r => r.source === 'learned')
      theirs = JSON.parse(await api(nodePort, 'GET', '/routes', ADMIN_TOKEN, undefined, 2000))
    } catch (err) {
      L.log(`routes: ${err.message}`)
    }
    const irs = ours.find(r => r.prefix === 'test.irs')
    if (irs && irs.peer === 'irs' && irs.used && theirs['test.router'] === 'router') break
    if (Date.now() - started > 20000) {
      throw new Error(`routes not learned within 20 s: our router's learned routes ${JSON.stringify(ours)}; ilp-node's table ${JSON.stringify(theirs)}`)
    }
    await L.sleep(100)
  }
  const oursText = ours.map(r => `${r.prefix} from ${r.peer} via ${r.path.join(' ') || '(none)'}${r.used ? '' : ' (not used)'}`).join(', ')
  L.log(`routes learned over CCP within ${Date.now() - started} ms of ilp-node's restart: our router: ${oursText}; ilp-node: ${JSON.stringify(theirs)}`)
  return { ms: Date.now() - started, ours, theirs, oursText }
}

/// JS STREAM sender → our router → ILP over HTTP → ilp-node's STREAM receiver (account bob).
async function toIlpNode ({ nodePort, routerPort }, amount, cleanup) {
  // The sender is our router's child: its STREAM connection learns test.router.sender (and
  // XRP/6) from the router over ILDCP.
  const senderPlugin = new L.RecordingPlugin(L.btpClient(`btp+ws://sender:sender-token@127.0.0.1:${routerPort}`))
  await senderPlugin.connect()
  cleanup.push(() => senderPlugin.disconnect().catch(() => {}))
  const notifications = await paymentNotifications(nodePort, 'bob')
  cleanup.push(() => notifications.close())

  // bob's SPSP endpoint, served by ilp-node.
  const res = await fetch(`http://127.0.0.1:${nodePort}/accounts/bob/spsp`, {
    headers: { Accept: 'application/spsp4+json' },
    signal: AbortSignal.timeout(5000)
  })
  if (!res.ok) throw new Error(`ilp-node SPSP: HTTP ${res.status}`)
  const spsp = await res.json()
  L.log(`to ilp-node: STREAM ${amount} ${SENDER.code}/${SENDER.scale} → ${spsp.destination_account} (${BOB.code}/${BOB.scale})`)
  const seen = {}
  const delivered = await L.streamSend(senderPlugin, {
    destinationAccount: spsp.destination_account,
    sharedSecret: Buffer.from(spsp.shared_secret, 'base64')
  }, amount, seen)

  const sent = senderPlugin.sent.filter(p => p.fulfilled && p.amount > 0n).map(p => p.amount)
  // Our router: exact, rounded down; ilp-node: EUR/6 → EUR/9, times 1000.
  const expected = sorted(sent.map(a => L.routerConvert(a, SENDER, LINK, RATES) * 1000n))
  const deadline = Date.now() + 5000
  while (sum(notifications.amounts) < sum(expected) && Date.now() < deadline) await L.sleep(50)
  const got = sorted(notifications.amounts)
  L.log(`to ilp-node: fulfilled packets: sent ${sent.length} (${sum(sent)}), ilp-node notified ${got.length} (${sum(got)}); sender's STREAM says delivered ${delivered}`)
  L.log(`to ilp-node: per packet sent: ${sent.join(',')}; received: ${got.join(',')}; expected: ${expected.join(',')}`)
  const balance = await api(nodePort, 'GET', '/accounts/bob/balance', ADMIN_TOKEN)
  L.log(`to ilp-node: bob's balance on ilp-node: ${balance}`)

  const problems = []
  const learned = `${seen.sourceAccount} ${seen.sourceAssetCode}/${seen.sourceAssetScale}`
  if (learned !== `test.router.sender ${SENDER.code}/${SENDER.scale}`) problems.push(`the sender learned ${learned} from our router over ILDCP`)
  if (sum(sent) !== amount) problems.push(`sender paid ${sum(sent)}, asked for ${amount}`)
  if (expected.join(',') !== got.join(',')) problems.push(`per-packet amounts at ilp-node differ from the rates: expected ${expected.join(',')}, got ${got.join(',')}`)
  if (delivered !== sum(expected)) problems.push(`sender's totalDelivered ${delivered} != expected ${sum(expected)}`)
  if (sum(expected) === 0n) problems.push('nothing was expected to arrive')
  const summary = `to ilp-node: sent ${sum(sent)} ${SENDER.code}/${SENDER.scale} in ${sent.length} packets, ilp-node received ${sum(got)} ${BOB.code}/${BOB.scale} as the rates say`
  return { problems, summary }
}

/// ilp-node (account alice pays, SPSP + STREAM) → ILP over HTTP → our router → JS STREAM receiver.
async function fromIlpNode ({ nodePort, routerPort }, sourceAmount, cleanup) {
  // Our router's child: its STREAM server learns test.router.receiver from the router (ILDCP).
  const receiverPlugin = new L.RecordingPlugin(L.btpClient(`btp+ws://receiver:receiver-token@127.0.0.1:${routerPort}`))
  await receiverPlugin.connect()
  cleanup.push(() => receiverPlugin.disconnect().catch(() => {}))
  const { server, received } = await L.streamReceiver(receiverPlugin)

  // A minimal SPSP server for ilp-node's client: every query gets a fresh address and secret.
  const spsp = http.createServer((req, res) => {
    const { destinationAccount, sharedSecret } = server.generateAddressAndSecret()
    res.writeHead(200, { 'Content-Type': 'application/spsp4+json' })
    res.end(JSON.stringify({ destination_account: destinationAccount, shared_secret: sharedSecret.toString('base64') }))
  })
  const spspPort = await L.freePort()
  await new Promise(resolve => spsp.listen(spspPort, '127.0.0.1', resolve))
  cleanup.push(() => new Promise(resolve => spsp.close(() => resolve())))

  L.log(`from ilp-node: alice pays ${sourceAmount} ${ALICE.code}/${ALICE.scale} → http://127.0.0.1:${spspPort}/ (${RECEIVER.code}/${RECEIVER.scale})`)
  const receipt = await api(nodePort, 'POST', '/accounts/alice/payments', 'alice-token', {
    receiver: `http://127.0.0.1:${spspPort}/`,
    source_amount: Number(sourceAmount)
  }, 30000)
  L.log(`from ilp-node: receipt ${receipt}`)
  const deadline = Date.now() + 5000
  const deliveredAmount = jsonInteger(receipt, 'delivered_amount')
  while (received() < deliveredAmount && Date.now() < deadline) await L.sleep(50)

  // alice EUR/4 → link EUR/6 is exactly ×100 at ilp-node; our router's EUR/6 → XRP/9 is
  // exactly ×2160 (1.08 / 0.5 × 1000). So every packet must arrive as a multiple of 216000,
  // and together as exactly source × 216000.
  const factor = 100n * L.routerConvert(1n, LINK, RECEIVER, RATES)
  const got = receiverPlugin.received.filter(p => p.fulfilled && p.amount > 0n).map(p => p.amount)
  L.log(`from ilp-node: receiver got ${got.length} packets: ${got.join(',')} (STREAM total ${received()}); expected ${sourceAmount} × ${factor} = ${sourceAmount * factor}`)
  const problems = []
  const sentAmount = jsonInteger(receipt, 'sent_amount')
  if (sentAmount !== sourceAmount) problems.push(`ilp-node sent ${sentAmount}, asked for ${sourceAmount}`)
  const odd = got.filter(a => a % factor !== 0n)
  if (odd.length) problems.push(`packets that are not a whole number of alice's units at the rates: ${odd.join(',')}`)
  if (sum(got) !== sourceAmount * factor) problems.push(`receiver got ${sum(got)} in fulfilled packets, expected ${sourceAmount * factor}`)
  if (received() !== sum(got)) problems.push(`receiver's STREAM total ${received()} != its fulfilled packets' ${sum(got)}`)
  if (deliveredAmount !== sum(got)) problems.push(`ilp-node's receipt says delivered ${deliveredAmount}, the receiver got ${sum(got)}`)
  const summary = `from ilp-node: sent ${sentAmount} ${ALICE.code}/${ALICE.scale}, received ${sum(got)} ${RECEIVER.code}/${RECEIVER.scale} in ${got.length} packets as the rates say`
  return { problems, summary }
}

async function main () {
  const opts = args()
  const cleanup = []
  let failed = false
  const summaries = []
  try {
    const ctx = await setup(opts, cleanup)
    if (ctx.routes) {
      summaries.push(`routes over CCP: our router learned ${ctx.routes.oursText}, ilp-node test.router → ${ctx.routes.theirs['test.router']}`)
    }
    const runs = []
    if (opts.direction !== 'from-ilp-node') runs.push(() => toIlpNode(ctx, opts.amount, cleanup))
    if (opts.direction !== 'to-ilp-node') runs.push(() => fromIlpNode(ctx, opts.fromAmount, cleanup))
    for (const run of runs) {
      const { problems, summary } = await run()
      for (const p of problems) L.log('FAIL', p)
      if (problems.length) failed = true
      else summaries.push(summary)
    }
  } catch (err) {
    failed = true
    L.log('FAIL', err && err.stack ? err.stack : err)
  } finally {
    for (const step of cleanup.reverse()) {
      try {
        await step()
      } catch (err) {
        failed = true
        L.log('FAIL cleanup:', err.message)
      }
    }
  }
  // Printed last, after the router, ilp-node and Redis have stopped.
  if (!failed) console.log(`PASS ilp-node over HTTP (${opts.routes} routes): ${summaries.join('; ')}`)
  process.exit(failed ? 1 : 0)
}

main()
