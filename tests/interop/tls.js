'use strict'
// STREAM payments across the JS reference connector and our router over TLS only:
//
//   STREAM endpoints ─BTP─ JS connector A (test.a) ═ILP over HTTP over TLS, both ways═ router
//   STREAM endpoints ─BTP─ JS connector B (test.b) ═BTP over wss://, B dials═════════ router
//   STREAM endpoints ─BTP─ JS connector C (test.c) ═BTP over wss://, router dials════ router
//
//   INTEROP_TLS_CERTS=<dir> NODE_EXTRA_CA_CERTS=<dir>/ca.pem node tls.js [--amount N]
//
// ILP_ROUTER_BIN names the ilp-router binary. <dir> holds ca.pem (a test CA), router.pem and
// router.key (our router's certificate, for `localhost` and 127.0.0.1, signed by the CA) and
// js.pem and js.key (the certificate of the JS connectors' TLS servers, the same names and
// CA); tests/interop.rs makes them with rcgen. Node trusts the CA through NODE_EXTRA_CA_CERTS
// (read only when Node starts, hence in the environment); our router through `[tls] ca_file`.
//
// Our router listens on `btp_tls` and `http_tls` only (no plaintext ILP listener) and serves
// `[admin]` on loopback for its metrics. A's account `router` is `ilp-plugin-http`: A POSTs to
// `https://127.0.0.1:<http_tls>/`, our router POSTs to A's server at `https://localhost:<A>/`
// (ilp-plugin-http 1.6.1 has no TLS option for its server: the script serves the plugin's own
// request handler, its Koa app, with `https.createServer` instead of the plain `app.listen`).
// B's account `router` is an `ilp-plugin-btp` client on `btp+wss://b:b-token@127.0.0.1:<btp_tls>`.
// C's account `router` is an `ilp-plugin-btp` server on an `https.Server` (the plugin's own
// `listener.wsOpts.server` option), which our router dials at `btp+wss://127.0.0.1:<C>`.
//
// Three payments, each crossing two TLS links: A→B, B→C, C→A (so every link carries Prepares
// both ways). Each is checked like stream-payment.js: the sender paid exactly the amount, every
// fulfilled packet arrived as exactly what the rates give for it (the JS connectors one-to-one
// by scale, our router exact, each rounded down), the receiver's total and the sender's
// totalDelivered are their sum, and no Prepare of the payment got a T-class Reject. Then the
// TLS checks:
//   - every TLS connection this process opened to the router's TLS ports (each is watched
//     through `tls.connect`) completed its handshake, verified the router's chain against the
//     test CA (`authorized`), and got router.pem (same SHA-256);
//   - our router's `ilp_tls_handshakes_total{result="ok"}` equals the number of those
//     connections, and nothing was refused (`result="cert_refused"`,
//     `ilp_tls_dial_failures_total` 0);
//   - our router dialled A and C over TLS: their https servers completed handshakes with it;
//   - a plaintext `ws://` connect to the `btp_tls` port and a plaintext `http://` POST to the
//     `http_tls` port both fail, and `ilp_tls_handshakes_total{result="failed"}` rises by 2.
// Exit 0 and a last line "PASS ..." on success.

const crypto = require('crypto')
const fs = require('fs')
const http = require('http')
const https = require('https')
const path = require('path')
const tls = require('tls')
const L = require('./lib')

function args () {
  const out = { amount: 1000000000n }
  const argv = process.argv.slice(2)
  for (let i = 0; i < argv.length; i += 2) {
    const [key, value] = [argv[i], argv[i + 1]]
    if (value === undefined) throw new Error(`${key} needs a value`)
    if (key === '--amount') out.amount = BigInt(value)
    else throw new Error(`unknown argument ${key}`)
  }
  return out
}

/// The certificate files, from INTEROP_TLS_CERTS; NODE_EXTRA_CA_CERTS must name its ca.pem.
function certificates () {
  const dir = process.env.INTEROP_TLS_CERTS
  if (!dir) throw new Error('set INTEROP_TLS_CERTS to a directory with ca.pem, router.pem/.key, js.pem/.key (tests/interop.rs makes them)')
  const file = name => {
    const p = path.resolve(dir, name)
    if (!fs.existsSync(p)) throw new Error(`${p} does not exist`)
    return p
  }
  const certs = {
    ca: file('ca.pem'),
    routerCert: file('router.pem'),
    routerKey: file('router.key'),
    jsCert: file('js.pem'),
    jsKey: file('js.key')
  }
  // The file NODE_EXTRA_CA_CERTS names must hold the test CA (it may be ca.pem itself).
  const extra = process.env.NODE_EXTRA_CA_CERTS
  const ca = fs.readFileSync(certs.ca, 'utf8').trim()
  if (!extra || !fs.existsSync(extra) || !fs.readFileSync(extra, 'utf8').includes(ca)) {
    throw new Error(`NODE_EXTRA_CA_CERTS must name ${certs.ca} (Node reads it when it starts), not ${extra || 'unset'}`)
  }
  return certs
}

// Our router's prices.
const RATES = { USD: '1', EUR: '1.08', XRP: '0.5' }
const HUGE = '1000000000000000000'
const MAX_PACKET = '300000000' // each connector's children: STREAM splits a payment of 10^9

// Each side: its address, its STREAM children's asset, and the asset of its link to our router.
const SIDES = {
  A: { address: 'test.a', child: { code: 'USD', scale: 9 }, link: { code: 'EUR', scale: 6 } },
  B: { address: 'test.b', child: { code: 'XRP', scale: 9 }, link: { code: 'XRP', scale: 9 } },
  C: { address: 'test.c', child: { code: 'EUR', scale: 9 }, link: { code: 'USD', scale: 9 } }
}
const PAYMENTS = [['A', 'B'], ['B', 'C'], ['C', 'A']]

const A_TOKEN = 'a-token' // A presents it to our router (our auth_tokens)
const ROUTER_AT_A = 'router-at-a' // our router presents it to A
const B_TOKEN = 'b-token'
const ROUTER_AT_C = 'router-at-c'

function withTimeout (promise, ms, what) {
  let timer
  const timeout = new Promise((resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} timed out after ${ms} ms`)), ms)
  })
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer))
}

/// Every TLS connection this process opens to one of `ports` on loopback, as the client saw
/// it: { port, ok, authorized, protocol, fingerprint, error }. ws (ilp-plugin-btp's client) and
/// Node's https agent (node-fetch in ilp-plugin-http) both open theirs with `tls.connect`.
function watchTlsConnections (ports) {
  const seen = []
  const connect = tls.connect
  tls.connect = function (...a) {
    const socket = connect.apply(this, a)
    const options = a.find(x => x && typeof x === 'object') || {}
    const port = Number(options.port !== undefined ? options.port : a[0])
    if (ports.includes(port)) {
      const entry = { port, ok: false, authorized: false, protocol: null, fingerprint: null, error: null }
      seen.push(entry)
      socket.once('secureConnect', () => {
        entry.ok = true
        entry.authorized = socket.authorized
        entry.protocol = socket.getProtocol()
        entry.fingerprint = socket.getPeerCertificate().fingerprint256
      })
      socket.once('error', err => { if (!entry.ok) entry.error = err.message })
    }
    return socket
  }
  return seen
}

/// An https.Server with the JS side's certificate that counts its handshakes.
function jsTlsServer (certs, handler) {
  const server = https.createServer({
    cert: fs.readFileSync(certs.jsCert),
    key: fs.readFileSync(certs.jsKey)
  }, handler)
  server.stats = { handshakes: 0, protocols: new Set(), clientErrors: 0, requests: 0 }
  server.on('secureConnection', socket => {
    server.stats.handshakes++
    server.stats.protocols.add(socket.getProtocol())
  })
  server.on('tlsClientError', () => { server.stats.clientErrors++ })
  server.on('request', () => { server.stats.requests++ })
  return server
}

/// ilp-plugin-http 1.6.1, its server on https: its `connect()` builds a Koa app and calls
/// `app.listen(incoming.port)` (a plain http.Server; the plugin has no TLS option). This serves
/// that same app, the plugin's own request handling, with `https.createServer` instead, on
/// 127.0.0.1 (on the port `incoming.port` names; 0: one the system picks). `server` is set once
/// connected.
function httpsPluginHttp (options, certs) {
  const PluginHttp = require('ilp-plugin-http')
  const plugin = new PluginHttp(options)
  let app = null
  Object.defineProperty(plugin, '_app', {
    get: () => app,
    set: value => {
      app = value
      app.listen = port => {
        plugin.server = jsTlsServer(certs, app.callback())
        return plugin.server.listen(port, '127.0.0.1')
      }
    }
  })
  return plugin
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

/// Our router's side of the conversion from `from`'s child to `to`'s child, per packet: the
/// sender's connector (one-to-one), our router (exact), the receiver's connector (one-to-one).
function convert (amount, from, to) {
  const f = SIDES[from]
  const t = SIDES[to]
  return L.jsOneToOne(L.routerConvert(L.jsOneToOne(amount, f.child, f.link), f.link, t.link, RATES), t.link, t.child)
}

/// The value of the Prometheus sample `name` (with its labels) in `text`.
function sample (text, name) {
  for (const line of text.split('\n')) {
    if (line.startsWith(name + ' ')) return Number(line.slice(name.length + 1).trim())
  }
  throw new Error(`no sample ${name} in the router's /metrics`)
}

async function routerMetrics (adminPort) {
  const res = await fetch(`http://127.0.0.1:${adminPort}/metrics`, { signal: AbortSignal.timeout(2000) })
  if (!res.ok) throw new Error(`GET /metrics: HTTP ${res.status}`)
  const text = await res.text()
  return {
    ok: sample(text, 'ilp_tls_handshakes_total{result="ok"}'),
    failed: sample(text, 'ilp_tls_handshakes_total{result="failed"}'),
    certRefused: sample(text, 'ilp_tls_handshakes_total{result="cert_refused"}'),
    dialFailures: sample(text, 'ilp_tls_dial_failures_total')
  }
}

/// One TLS connection to the router's port, closed once the handshake is done (a readiness
/// check that is itself a proper TLS client, so that it counts as a good handshake). Resolves
/// with null, or why it failed.
function tlsHello (port) {
  return new Promise(resolve => {
    const socket = tls.connect({ host: '127.0.0.1', port })
    socket.once('secureConnect', () => { socket.end(); resolve(null) })
    socket.once('error', err => resolve(err.message))
    socket.setTimeout(2000, () => { socket.destroy(); resolve('timed out') })
  })
}

async function waitForTls (child, port, timeoutMs) {
  const deadline = Date.now() + timeoutMs
  let error
  while ((error = await tlsHello(port)) !== null) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`the router exited (${child.exitCode || child.signalCode})`)
    if (Date.now() > deadline) throw new Error(`no TLS handshake on 127.0.0.1:${port} after ${timeoutMs} ms (last: ${error})`)
    await L.sleep(100)
  }
}

/// The port `server` listens on, once it does.
async function listeningPort (server, what) {
  if (!server.listening) {
    await withTimeout(new Promise((resolve, reject) => {
      server.once('listening', resolve)
      server.once('error', reject)
    }), 5000, `${what} listening`)
  }
  return server.address().port
}

/// What an uncaught error must not leave behind: our router's process.
const emergency = { router: null }

async function setup (certs, cleanup) {
  const port = {
    routerBtpTls: await L.freePort(),
    routerHttpTls: await L.freePort(),
    admin: await L.freePort(),
    // A's https and C's wss server listen on port 0 and are read back once listening (they
    // start before our router, whose config names them).
    aHttps: null,
    cWss: null
  }
  for (const side of Object.keys(SIDES)) {
    port[side] = { sender: await L.freePort(), receiver: await L.freePort() }
  }
  const toRouter = watchTlsConnections([port.routerBtpTls, port.routerHttpTls])
  const routesTo = side => Object.keys(SIDES).filter(s => s !== side)
    .map(s => ({ targetPrefix: SIDES[s].address, peerId: 'router' }))
    .concat([{ targetPrefix: 'test.router', peerId: 'router' }])
  const connectorAccounts = (side, router) => ({
    router: Object.assign({
      relation: 'peer',
      sendRoutes: false,
      receiveRoutes: false,
      assetCode: SIDES[side].link.code,
      assetScale: SIDES[side].link.scale,
      balance: { maximum: HUGE }
    }, router),
    sender: childAccount(SIDES[side].child, port[side].sender, `${side}-sender-secret`),
    receiver: childAccount(SIDES[side].child, port[side].receiver, `${side}-receiver-secret`)
  })
  const connectors = {}

  // C first: our router dials its wss server. The server is an https.Server given to
  // ilp-plugin-btp's listener (`wsOpts.server`), which the plugin listens on at `port`.
  const BtpPlugin = require('ilp-plugin-btp')
  const cServer = jsTlsServer(certs)
  const cPlugin = new BtpPlugin({ listener: { port: 0, secret: ROUTER_AT_C, wsOpts: { server: cServer } } })
  connectors.C = await L.startJsConnector({
    ilpAddress: SIDES.C.address,
    accounts: connectorAccounts('C', { plugin: cPlugin }),
    routes: routesTo('C')
  })
  cleanup.push(() => connectors.C.shutdown())
  port.cWss = await listeningPort(cServer, "C's wss server")

  // A: its ilp-plugin-http server on https, its client POSTing to our https listener.
  const aPlugin = httpsPluginHttp({
    incoming: { port: 0, staticToken: ROUTER_AT_A },
    outgoing: { url: `https://127.0.0.1:${port.routerHttpTls}/`, staticToken: A_TOKEN, name: 'router' }
  }, certs)
  connectors.A = await L.startJsConnector({
    ilpAddress: SIDES.A.address,
    accounts: connectorAccounts('A', { plugin: aPlugin }),
    routes: routesTo('A')
  })
  cleanup.push(() => connectors.A.shutdown())
  if (!aPlugin.server) throw new Error("A's ilp-plugin-http did not listen through the https server")
  port.aHttps = await listeningPort(aPlugin.server, "A's https server")

  const peer = (name, side, keys) => `
[[peers]]
name = "${name}"
relation = "peer"
send_routes = false                  # static routes on both sides: no CCP here
receive_routes = false
asset_code = "${SIDES[side].link.code}"
asset_scale = ${SIDES[side].link.scale}
max_balance = "${HUGE}"
${keys}
[[routes]]
prefix = "${SIDES[side].address}"
peer = "${name}"`
  const router = await L.startRouter({
    // Waited for on the admin port: a bare TCP connect to a TLS port would count as a failed
    // handshake. The TLS ports are waited for with real handshakes below.
    btpPort: port.admin,
    config: `
ilp_address = "test.router"
[listen]
btp_tls = "127.0.0.1:${port.routerBtpTls}"
http_tls = "127.0.0.1:${port.routerHttpTls}"
[tls]
cert_file = "${certs.routerCert}"
key_file = "${certs.routerKey}"
ca_file = "${certs.ca}"                # for A's https server and C's wss server, which we dial
[admin]
listen = "127.0.0.1:${port.admin}"
[limits]
reconnect_max_ms = 500
${peer('a', 'A', `auth_tokens = ["${A_TOKEN}"]
http_url = "https://localhost:${port.aHttps}/"
outgoing_token = "${ROUTER_AT_A}"`)}
${peer('b', 'B', `auth_tokens = ["${B_TOKEN}"]`)}
${peer('c', 'C', `btp_url = "btp+wss://127.0.0.1:${port.cWss}"
outgoing_token = "${ROUTER_AT_C}"
outgoing_username = "router"
btp_dial = "single"                  # ilp-plugin-btp keeps one connection per account`)}
[rates]
${Object.entries(RATES).map(([k, v]) => `${k} = "${v}"`).join('\n')}
`
  })
  // Stopped first, while the connectors can still answer what it has in flight.
  cleanup.router = () => router.stop()
  emergency.router = router.child
  await waitForTls(router.child, port.routerBtpTls, 10000)
  await waitForTls(router.child, port.routerHttpTls, 10000)

  // B dials our wss listener.
  connectors.B = await L.startJsConnector({
    ilpAddress: SIDES.B.address,
    accounts: connectorAccounts('B', {
      plugin: 'ilp-plugin-btp',
      options: { server: `btp+wss://b:${B_TOKEN}@127.0.0.1:${port.routerBtpTls}` }
    }),
    routes: routesTo('B')
  })
  cleanup.push(() => connectors.B.shutdown())

  const deadline = Date.now() + 10000
  for (const side of ['B', 'C']) {
    while (!connectors[side].getPlugin('router').isConnected()) {
      if (Date.now() > deadline) throw new Error(`the BTP link between ${side} and the router did not come up over wss`)
      await L.sleep(50)
    }
  }

  // One STREAM receiver per side, for the whole run.
  const receivers = {}
  for (const side of Object.keys(SIDES)) {
    const plugin = new L.RecordingPlugin(L.btpClient(`btp+ws://:${side}-receiver-secret@127.0.0.1:${port[side].receiver}`))
    await plugin.connect()
    cleanup.push(() => plugin.disconnect())
    const { server, received } = await L.streamReceiver(plugin)
    receivers[side] = { server, received, plugin }
  }
  const open = new Set()
  cleanup.push(() => Promise.all([...open].map(p => p.close())))
  return { port, toRouter, receivers, open, aServer: aPlugin.server, cServer }
}

/// A STREAM sender's link to its connector, kept connected until cleanup (see
/// mixed-topology.js: the receiver's close frame then gets a prompt answer).
class SenderPlugin extends L.RecordingPlugin {
  disconnect () { return Promise.resolve() }
  close () { return this.inner.disconnect() }
}

/// One STREAM payment of `amount` from `from`'s sender child to `to`'s receiver child.
/// Returns { ok, line }.
async function pay (env, from, to, amount) {
  const plugin = new SenderPlugin(L.btpClient(`btp+ws://:${from}-sender-secret@127.0.0.1:${env.port[from].sender}`))
  env.open.add(plugin)
  await plugin.connect()
  const { server, received, plugin: receiverPlugin } = env.receivers[to]
  const receivedBefore = received()
  const receiverRecordedBefore = receiverPlugin.received.length
  const receiverSentBefore = receiverPlugin.sent.length
  const credentials = server.generateAddressAndSecret()
  const problems = []
  const seen = {}
  const started = Date.now()
  let delivered = 0n
  try {
    delivered = await withTimeout(L.streamSend(plugin, credentials, amount, seen), 20000, 'the STREAM payment')
  } catch (err) {
    problems.push(err.message)
  }
  const ms = Date.now() - started
  // Money frames may trail the sender's view by a moment.
  const waitUntil = Date.now() + 500
  while (received() - receivedBefore !== delivered && Date.now() < waitUntil) await L.sleep(10)

  const sent = plugin.sent.filter(p => p.fulfilled && p.amount > 0n).map(p => p.amount)
  const got = receiverPlugin.received.slice(receiverRecordedBefore)
    .filter(p => p.fulfilled && p.amount > 0n).map(p => p.amount)
  const sort = xs => [...xs].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))
  const expected = sort(sent.map(a => convert(a, from, to)))
  const expectedTotal = expected.reduce((a, b) => a + b, 0n)
  const paid = sent.reduce((a, b) => a + b, 0n)
  const total = received() - receivedBefore
  const f = SIDES[from]
  const t = SIDES[to]
  if (problems.length === 0) {
    if (seen.sourceAccount !== `${f.address}.sender` || seen.sourceAssetCode !== f.child.code || seen.sourceAssetScale !== f.child.scale) {
      problems.push(`the sender learned ${seen.sourceAccount} ${seen.sourceAssetCode}/${seen.sourceAssetScale} over ILDCP, expected ${f.address}.sender ${f.child.code}/${f.child.scale}`)
    }
    if (paid !== amount) problems.push(`sender paid ${paid}, asked for ${amount}`)
    if (expected.join(',') !== sort(got).join(',')) problems.push(`per-packet amounts differ from the rates: expected ${expected.join(',')}, got ${sort(got).join(',')}`)
    if (total !== expectedTotal) problems.push(`receiver's STREAM total ${total} != expected ${expectedTotal}`)
    if (delivered !== expectedTotal) problems.push(`sender's totalDelivered ${delivered} != expected ${expectedTotal}`)
    if (expectedTotal === 0n) problems.push('nothing was expected to arrive: amounts too small for the test')
  }
  const temporary = plugin.sent.concat(receiverPlugin.sent.slice(receiverSentBefore)).filter(p => p.code && p.code[0] === 'T')
  for (const p of temporary) problems.push(`T-class Reject ${p.code} from ${p.triggeredBy} "${p.message}" (STREAM retried it)`)
  const ok = problems.length === 0
  const line = `${from}→${to}: ${ok ? 'ok' : 'FAILED'} in ${ms} ms: ${paid} ${f.child.code}/${f.child.scale} in ${sent.length} packet(s)` +
    ` → ${total} ${t.child.code}/${t.child.scale} (expected ${expectedTotal}; per packet ${got.join(',')})` +
    (ok ? '' : `: ${problems.join('; ')}`)
  return { ok, line, delivered: total }
}

/// A plaintext WebSocket connect to a TLS port: resolves with how it failed, or null if it
/// opened.
function plainWs (port) {
  const WebSocket = require('ws')
  return new Promise(resolve => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/`)
    const timer = setTimeout(() => { ws.terminate(); resolve('no answer within 5 s') }, 5000)
    ws.once('open', () => { clearTimeout(timer); ws.terminate(); resolve(null) })
    ws.once('unexpected-response', (req, res) => { clearTimeout(timer); resolve(`HTTP ${res.statusCode} instead of an upgrade`) })
    ws.once('error', err => { clearTimeout(timer); resolve(err.message) })
  })
}

/// A plaintext ILP-over-HTTP POST (a Prepare) to a TLS port: resolves with how it failed, or
/// null if an HTTP 200 came back.
function plainHttp (port) {
  return new Promise(resolve => {
    const IlpPacket = require('ilp-packet')
    const body = IlpPacket.serializeIlpPrepare({
      amount: '1',
      destination: 'test.b.nobody',
      executionCondition: crypto.randomBytes(32),
      expiresAt: new Date(Date.now() + 10000),
      data: Buffer.alloc(0)
    })
    const req = http.request({
      host: '127.0.0.1',
      port,
      method: 'POST',
      path: '/',
      headers: { Authorization: `Bearer ${A_TOKEN}`, 'Content-Type': 'application/octet-stream', 'Content-Length': body.length },
      timeout: 5000
    }, res => {
      res.resume()
      resolve(res.statusCode === 200 ? null : `HTTP ${res.statusCode}`)
    })
    req.once('timeout', () => { req.destroy(); resolve('no answer within 5 s') })
    req.once('error', err => resolve(err.message))
    req.end(body)
  })
}

async function tlsChecks (env, certs, problems) {
  const routerFingerprint = new crypto.X509Certificate(fs.readFileSync(certs.routerCert)).fingerprint256
  const before = await routerMetrics(env.port.admin)
  // A readiness check refused before the router listened never reached it.
  const conns = env.toRouter.filter(c => !(c.error && c.error.includes('ECONNREFUSED')))
  const good = conns.filter(c => c.ok && c.authorized && c.fingerprint === routerFingerprint)
  const byPort = p => conns.filter(c => c.port === p).length
  const protocols = [...new Set(conns.map(c => c.protocol))].join('/')
  L.log(`TLS connections from JS to the router: ${conns.length} (btp_tls ${byPort(env.port.routerBtpTls)}, http_tls ${byPort(env.port.routerHttpTls)}; ${protocols}), ${good.length} verified with the router's certificate`)
  L.log(`router's counters: handshakes ok ${before.ok}, failed ${before.failed}, cert_refused ${before.certRefused}; dial failures ${before.dialFailures}`)
  for (const c of conns.filter(c => !good.includes(c))) {
    problems.push(`a TLS connection to the router's port ${c.port} was not verified: ${JSON.stringify(c)}`)
  }
  // Beyond the two readiness handshakes, B's wss link and A's https connections.
  if (byPort(env.port.routerBtpTls) < 2) problems.push(`only ${byPort(env.port.routerBtpTls)} TLS connection(s) to btp_tls: B's link did not go over it`)
  if (byPort(env.port.routerHttpTls) < 2) problems.push(`only ${byPort(env.port.routerHttpTls)} TLS connection(s) to http_tls: A did not POST over it`)
  if (before.ok !== good.length) problems.push(`the router counted ${before.ok} good TLS handshakes, the JS side made ${good.length}`)
  if (before.certRefused !== 0) problems.push(`the router refused ${before.certRefused} client certificate(s)`)
  if (before.dialFailures !== 0) problems.push(`${before.dialFailures} of the router's TLS dials failed`)

  // Our router dialled A (https) and C (wss) over TLS, verifying them with ca_file.
  const a = env.aServer.stats
  const c = env.cServer.stats
  L.log(`router → A's https server: ${a.handshakes} handshake(s) (${[...a.protocols].join('/')}), ${a.requests} POST(s); router → C's wss server: ${c.handshakes} handshake(s) (${[...c.protocols].join('/')})`)
  if (a.handshakes < 1 || a.requests < 1) problems.push(`the router did not POST to A over https (${a.handshakes} handshakes, ${a.requests} requests)`)
  if (c.handshakes < 1) problems.push('the router did not dial C over wss')
  if (a.clientErrors + c.clientErrors !== 0) problems.push(`the JS TLS servers saw ${a.clientErrors + c.clientErrors} failed handshake(s)`)

  // Plaintext on the TLS ports fails, and the router counts it as a failed handshake.
  const ws = await plainWs(env.port.routerBtpTls)
  const post = await plainHttp(env.port.routerHttpTls)
  L.log(`plaintext ws:// to btp_tls: ${ws === null ? 'OPENED' : `failed (${ws})`}; plaintext http:// POST to http_tls: ${post === null ? 'ANSWERED 200' : `failed (${post})`}`)
  if (ws === null) problems.push('a plaintext ws:// connection to btp_tls opened')
  if (post === null) problems.push('a plaintext http:// POST to http_tls was answered')
  let after = await routerMetrics(env.port.admin)
  const deadline = Date.now() + 3000
  while (after.failed - before.failed < 2 && Date.now() < deadline) {
    await L.sleep(50)
    after = await routerMetrics(env.port.admin)
  }
  L.log(`router's counters after: handshakes ok ${after.ok}, failed ${after.failed}`)
  if (after.failed - before.failed !== 2) problems.push(`the router counted ${after.failed - before.failed} failed handshakes for the 2 plaintext attempts`)
  if (after.ok !== before.ok) problems.push(`the router counted ${after.ok - before.ok} good handshakes for the plaintext attempts`)
  return `${good.length} TLS connections from JS verified against the test CA and counted by the router (ok ${after.ok}), ` +
    `the router dialled A over https (${a.handshakes}) and C over wss (${c.handshakes}), plaintext on both TLS ports refused (failed +2)`
}

async function main () {
  // An error nobody waits for (a listener's EADDRINUSE in a plugin, say) ends the script
  // with a FAIL line, and kills our router rather than leave it running.
  process.on('uncaughtException', err => {
    L.log('FAIL uncaught:', err && err.stack ? err.stack : err)
    if (emergency.router) emergency.router.kill('SIGKILL')
    console.log(`FAIL tls: uncaught ${err && err.message}`)
    process.exit(1)
  })
  const opts = args()
  const cleanup = []
  const problems = []
  let summary = null
  const t0 = Date.now()
  try {
    const certs = certificates()
    const env = await setup(certs, cleanup)
    L.log(`setup done in ${Date.now() - t0} ms`)
    const lines = []
    for (const [from, to] of PAYMENTS) {
      const { ok, line } = await pay(env, from, to, opts.amount)
      L.log(line)
      lines.push(`${from}→${to}`)
      if (!ok) problems.push(line)
    }
    // Let the last handshakes settle on both sides before the counts are compared.
    await L.sleep(200)
    const tlsSummary = await tlsChecks(env, certs, problems)
    summary = `PASS tls: STREAM payments ${lines.join(', ')} of ${opts.amount} each arrived as the rates say ` +
      `over wss:// (B dials us, we dial C) and https:// (both ways with A); ${tlsSummary}`
  } catch (err) {
    problems.push(`setup: ${err && err.message}`)
    L.log('FAIL', err && err.stack ? err.stack : err)
  } finally {
    await L.sleep(300)
    const steps = cleanup.router ? [cleanup.router, ...cleanup.reverse()] : cleanup.reverse()
    for (const step of steps) {
      try {
        const result = await step()
        if (result && result.code !== undefined && result.code !== 0) problems.push(`router exit ${JSON.stringify(result)}`)
      } catch (err) {
        L.log('cleanup:', err.message)
      }
    }
  }
  L.log(`finished in ${Date.now() - t0} ms`)
  // Printed last, after the router and the connectors have stopped.
  if (problems.length) {
    for (const p of problems) L.log('FAIL', p)
    console.log(`FAIL tls: ${problems.length} problem(s): ${problems[0]}`)
  } else {
    console.log(summary)
  }
  process.exit(problems.length ? 1 : 0)
}

main()
