'use strict'
// A real STREAM payment across the JS reference connector and our router, in either order:
//
//   node stream-payment.js --topology js-first      sender → JS connector → router → receiver
//   node stream-payment.js --topology router-first  sender → router → JS connector → receiver
//   [--transport btp|http] [--amount N]
//
// ILP_ROUTER_BIN names the ilp-router binary. The STREAM endpoints' links are BTP 2.0 over
// WebSocket. The link between the JS connector and our router is the transport: with `btp`,
// in js-first the JS connector dials our router (our BTP server) and in router-first our
// router dials the JS connector (our BTP client); with `http` it is ILP over HTTP
// (`ilp-plugin-http` on the JS side) and each side POSTs its Prepares to the other's HTTP
// server with a static bearer token. Asset codes and scales differ on every hop on
// purpose; the script checks that every fulfilled packet arrived exactly as the rates say
// (our router: exact, rounded down; the JS connector: one-to-one by scale, rounded down) and
// that the receiver's total is the sum. Exit 0 and a last line "PASS ..." on success.

const L = require('./lib')

function args () {
  const out = { topology: 'js-first', transport: 'btp', amount: 1000000000n }
  const argv = process.argv.slice(2)
  for (let i = 0; i < argv.length; i += 2) {
    const [key, value] = [argv[i], argv[i + 1]]
    if (key === '--topology') out.topology = value
    else if (key === '--transport') out.transport = value
    else if (key === '--amount') out.amount = BigInt(value)
    else throw new Error(`unknown argument ${key}`)
  }
  if (!['js-first', 'router-first'].includes(out.topology)) throw new Error(`unknown topology ${out.topology}`)
  if (!['btp', 'http'].includes(out.transport)) throw new Error(`unknown transport ${out.transport}`)
  return out
}

// Our router's prices, shared by both topologies.
const RATES = { USD: '1', EUR: '1.08', XRP: '0.5' }
const HUGE = '1000000000000000000'

// Tokens on the link between the JS connector and our router, both directions.
const JS_TOKEN = 'js-token' // the JS connector presents it to our router (our auth_tokens)
const ROUTER_TOKEN = 'router-at-js' // our router presents it to the JS connector

/// The JS connector's `ilp-plugin-http` account toward our router: it POSTs to our `[listen]
/// http` with `Bearer <JS_TOKEN>`, and listens on `jsPort` for our POSTs, which carry
/// `Bearer <ROUTER_TOKEN>`.
///
/// `staticToken` is the option ilp-plugin-http 1.6 documents: it sends `Bearer <token>`. The
/// legacy `outgoing.secretToken` sends the bare token, as plugins before 1.6 did (the plugin
/// adds `Bearer ` only when neither `secret` nor `secretToken` is set); our router accepts that
/// too, but this test exercises the standard form.
function jsHttpPlugin (routerHttpPort, jsPort) {
  return {
    plugin: 'ilp-plugin-http',
    options: {
      incoming: { port: jsPort, staticToken: ROUTER_TOKEN },
      outgoing: { url: `http://127.0.0.1:${routerHttpPort}/`, staticToken: JS_TOKEN }
    }
  }
}

/// Our `[[peers]]` keys for the JS connector on the HTTP link: it authenticates with
/// JS_TOKEN, and we POST its Prepares to its `ilp-plugin-http` server.
function routerHttpPeer (jsPort) {
  return `auth_tokens = ["${JS_TOKEN}"]
http_url = "http://127.0.0.1:${jsPort}/"
outgoing_token = "${ROUTER_TOKEN}"`
}

function rateTable () {
  return Object.entries(RATES).map(([k, v]) => `${k} = "${v}"`).join('\n')
}

async function jsFirst (amount, transport, cleanup) {
  const routerPort = await L.freePort()
  const routerHttpPort = await L.freePort()
  const jsHttpPort = await L.freePort()
  const senderPort = await L.freePort()
  // Hops and assets: sender USD/9 → JS (one-to-one) → link JS–router EUR/6 → router → receiver XRP/4.
  const sender = { code: 'USD', scale: 9 }
  const link = { code: 'EUR', scale: 6 }
  const receiver = { code: 'XRP', scale: 4 }
  const http = transport === 'http'

  const router = await L.startRouter({
    btpPort: routerPort,
    config: `
ilp_address = "test.router"
[listen]
btp = "127.0.0.1:${routerPort}"
${http ? `http = "127.0.0.1:${routerHttpPort}"` : ''}
[[peers]]
name = "js"
relation = "peer"
send_routes = false                  # a static route both ways: no CCP on this link
receive_routes = false
asset_code = "${link.code}"
asset_scale = ${link.scale}
max_balance = "${HUGE}"
${http ? routerHttpPeer(jsHttpPort) : `auth_tokens = ["${JS_TOKEN}"]`}
[[peers]]
name = "receiver"
auth_tokens = ["receiver-token"]
relation = "child"
asset_code = "${receiver.code}"
asset_scale = ${receiver.scale}
max_balance = "${HUGE}"
[[routes]]
prefix = "test.js"
peer = "js"
[rates]
${rateTable()}
`
  })
  cleanup.push(() => router.stop())
  if (http) await L.waitForPort(routerHttpPort, 10000)

  const connector = await L.startJsConnector({
    ilpAddress: 'test.js',
    accounts: {
      router: Object.assign({
        relation: 'peer',
        sendRoutes: false,
        receiveRoutes: false,
        assetCode: link.code,
        assetScale: link.scale
      }, http
        ? jsHttpPlugin(routerHttpPort, jsHttpPort)
        : { plugin: 'ilp-plugin-btp', options: { server: `btp+ws://js:${JS_TOKEN}@127.0.0.1:${routerPort}` } }),
      sender: {
        relation: 'child',
        assetCode: sender.code,
        assetScale: sender.scale,
        balance: { maximum: HUGE },
        // STREAM learns this from the F08 and splits the payment into several packets.
        maxPacketAmount: '300000000',
        plugin: 'ilp-plugin-btp',
        options: { listener: { port: senderPort, secret: 'sender-secret' } }
      }
    },
    routes: [{ targetPrefix: 'test.router', peerId: 'router' }]
  })
  cleanup.push(() => connector.shutdown())

  // The receiver is our router's child: its STREAM server learns test.router.receiver (and
  // XRP/4) from the router over ILDCP.
  const receiverPlugin = new L.RecordingPlugin(L.btpClient(`btp+ws://receiver:receiver-token@127.0.0.1:${routerPort}`))
  // The sender is the JS connector's child: it learns test.js.sender over ILDCP from it.
  const senderPlugin = new L.RecordingPlugin(L.btpClient(`btp+ws://:sender-secret@127.0.0.1:${senderPort}`))

  const convert = a => L.routerConvert(L.jsOneToOne(a, sender, link), link, receiver, RATES)
  const addresses = { sender: 'test.js.sender', receiver: 'test.router.receiver' }
  return { senderPlugin, receiverPlugin, convert, sender, receiver, addresses, cleanup }
}

async function routerFirst (amount, transport, cleanup) {
  const routerPort = await L.freePort()
  const routerHttpPort = await L.freePort()
  const jsPort = await L.freePort()
  const receiverPort = await L.freePort()
  // sender XRP/6 → router → link router–JS EUR/9 → JS (one-to-one) → receiver USD/7.
  const sender = { code: 'XRP', scale: 6 }
  const link = { code: 'EUR', scale: 9 }
  const receiver = { code: 'USD', scale: 7 }
  const http = transport === 'http'

  // The JS connector first: our router dials its BTP server, or POSTs to its HTTP server.
  const connector = await L.startJsConnector({
    ilpAddress: 'test.js',
    accounts: {
      router: Object.assign({
        relation: 'peer',
        sendRoutes: false,
        receiveRoutes: false,
        assetCode: link.code,
        assetScale: link.scale,
        balance: { maximum: HUGE }
      }, http
        ? jsHttpPlugin(routerHttpPort, jsPort)
        : { plugin: 'ilp-plugin-btp', options: { listener: { port: jsPort, secret: ROUTER_TOKEN } } }),
      receiver: {
        relation: 'child',
        assetCode: receiver.code,
        assetScale: receiver.scale,
        plugin: 'ilp-plugin-btp',
        options: { listener: { port: receiverPort, secret: 'receiver-secret' } }
      }
    },
    routes: [{ targetPrefix: 'test.router', peerId: 'router' }]
  })
  cleanup.push(() => connector.shutdown())

  const router = await L.startRouter({
    btpPort: routerPort,
    config: `
ilp_address = "test.router"
[listen]
btp = "127.0.0.1:${routerPort}"
${http ? `http = "127.0.0.1:${routerHttpPort}"` : ''}
[[peers]]
name = "sender"
auth_tokens = ["sender-token"]
relation = "child"
asset_code = "${sender.code}"
asset_scale = ${sender.scale}
max_balance = "${HUGE}"
max_packet_amount = "300000000"   # STREAM learns it from our F08 and splits the payment
[[peers]]
name = "js"
relation = "peer"
send_routes = false                  # a static route both ways: no CCP on this link
receive_routes = false
asset_code = "${link.code}"
asset_scale = ${link.scale}
max_balance = "${HUGE}"
${http
    ? routerHttpPeer(jsPort)
    : `btp_url = "ws://127.0.0.1:${jsPort}"
outgoing_token = "${ROUTER_TOKEN}"
outgoing_username = "router"
btp_dial = "single"               # ilp-plugin-btp keeps one connection per account`}
[[routes]]
prefix = "test.js"
peer = "js"
[rates]
${rateTable()}
`
  })
  cleanup.push(() => router.stop())
  if (http) await L.waitForPort(routerHttpPort, 10000)

  // The receiver is the JS connector's child and learns test.js.receiver over ILDCP from it.
  const receiverPlugin = new L.RecordingPlugin(L.btpClient(`btp+ws://:receiver-secret@127.0.0.1:${receiverPort}`))
  // The sender is our router's child: it learns test.router.sender (and XRP/6) from the router
  // over ILDCP.
  const senderPlugin = new L.RecordingPlugin(L.btpClient(`btp+ws://sender:sender-token@127.0.0.1:${routerPort}`))

  // Wait until the router's BTP link to the JS connector is up (an HTTP link has no
  // connection state: ilp-plugin-http is connected once its server listens).
  const deadline = Date.now() + 10000
  while (!connector.getPlugin('router').isConnected()) {
    if (Date.now() > deadline) throw new Error('the router did not connect to the JS connector')
    await L.sleep(50)
  }
  const convert = a => L.jsOneToOne(L.routerConvert(a, sender, link, RATES), link, receiver)
  const addresses = { sender: 'test.router.sender', receiver: 'test.js.receiver' }
  return { senderPlugin, receiverPlugin, convert, sender, receiver, addresses, cleanup }
}

async function main () {
  const opts = args()
  const cleanup = []
  let failed = false
  let summary = null
  try {
    const setup = await (opts.topology === 'js-first' ? jsFirst : routerFirst)(opts.amount, opts.transport, cleanup)
    const { senderPlugin, receiverPlugin, convert, sender, receiver, addresses } = setup
    await receiverPlugin.connect()
    await senderPlugin.connect()
    const { server, received } = await L.streamReceiver(receiverPlugin)
    const credentials = server.generateAddressAndSecret()
    L.log(`STREAM ${opts.amount} ${sender.code}/${sender.scale} → ${credentials.destinationAccount} (${receiver.code}/${receiver.scale})`)
    const seen = {}
    const delivered = await L.streamSend(senderPlugin, credentials, opts.amount, seen)
    await L.sleep(200)
    // Both endpoints learned their address and asset over ILDCP from their parent (our router
    // for one of them, the JS connector for the other): nothing is set by hand.
    const learned = `sender ${seen.sourceAccount} ${seen.sourceAssetCode}/${seen.sourceAssetScale}, receiver ${credentials.destinationAccount.split('.').slice(0, 3).join('.')} ${server.assetCode}/${server.assetScale}`
    L.log(`over ILDCP: ${learned}`)

    // Zero-amount packets (STREAM's closing frames) carry no value and are left out.
    const sent = senderPlugin.sent.filter(p => p.fulfilled && p.amount > 0n).map(p => p.amount)
    const got = receiverPlugin.received.filter(p => p.fulfilled && p.amount > 0n).map(p => p.amount)
    const totalSent = sent.reduce((a, b) => a + b, 0n)
    const expected = sent.map(convert).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))
    const gotSorted = [...got].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))
    const expectedTotal = expected.reduce((a, b) => a + b, 0n)
    L.log(`fulfilled packets: sender ${sent.length} (${totalSent}), receiver ${got.length} (${received()}); sender's STREAM says delivered ${delivered}`)
    L.log(`per packet sent: ${sent.join(',')}; received: ${got.join(',')}; expected: ${expected.join(',')}`)

    const problems = []
    if (seen.sourceAccount !== addresses.sender || seen.sourceAssetCode !== sender.code || seen.sourceAssetScale !== sender.scale) {
      problems.push(`the sender learned ${seen.sourceAccount} ${seen.sourceAssetCode}/${seen.sourceAssetScale} over ILDCP, expected ${addresses.sender} ${sender.code}/${sender.scale}`)
    }
    if (!credentials.destinationAccount.startsWith(addresses.receiver + '.') || server.assetCode !== receiver.code || server.assetScale !== receiver.scale) {
      problems.push(`the receiver learned ${credentials.destinationAccount} ${server.assetCode}/${server.assetScale} over ILDCP, expected ${addresses.receiver}.… ${receiver.code}/${receiver.scale}`)
    }
    if (totalSent !== opts.amount) problems.push(`sender paid ${totalSent}, asked for ${opts.amount}`)
    if (expected.join(',') !== gotSorted.join(',')) problems.push(`per-packet amounts differ from the rates: expected ${expected.join(',')}, got ${gotSorted.join(',')}`)
    if (received() !== expectedTotal) problems.push(`receiver's STREAM total ${received()} != expected ${expectedTotal}`)
    if (delivered !== expectedTotal) problems.push(`sender's totalDelivered ${delivered} != expected ${expectedTotal}`)
    if (expectedTotal === 0n) problems.push('nothing was expected to arrive: amounts too small for the test')
    if (problems.length) {
      failed = true
      for (const p of problems) L.log('FAIL', p)
    } else {
      summary = `PASS ${opts.topology} ${opts.transport}: sent ${totalSent} ${sender.code}/${sender.scale} in ${sent.length} packet(s), received ${expectedTotal} ${receiver.code}/${receiver.scale} as the rates say; addresses over ILDCP: ${learned}`
    }
    await senderPlugin.disconnect().catch(() => {})
    await receiverPlugin.disconnect().catch(() => {})
  } catch (err) {
    failed = true
    L.log('FAIL', err && err.stack ? err.stack : err)
  } finally {
    for (const step of cleanup.reverse()) {
      try {
        const result = await step()
        if (result && result.code !== undefined && result.code !== 0) {
          failed = true
          L.log('FAIL router exit', JSON.stringify(result))
        }
      } catch (err) {
        L.log('cleanup:', err.message)
      }
    }
  }
  // Printed last, after the router and the connector have stopped.
  if (!failed) console.log(summary)
  process.exit(failed ? 1 : 0)
}

main()
