'use strict'
// Shared pieces of the interop scripts: free ports, our router as a child process, the JS
// connector in-process, plugin wrappers and exact amount arithmetic.

const { spawn } = require('child_process')
const fs = require('fs')
const net = require('net')
const os = require('os')
const path = require('path')
const { EventEmitter } = require('events')
const IlpPacket = require('ilp-packet')

function log (...args) {
  console.log(`[${new Date().toISOString()}]`, ...args)
}

function freePort () {
  return new Promise((resolve, reject) => {
    const server = net.createServer()
    server.unref()
    server.on('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address()
      server.close(() => resolve(port))
    })
  })
}

function sleep (ms) {
  return new Promise(resolve => setTimeout(resolve, ms))
}

async function waitForPort (port, timeoutMs) {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    const ok = await new Promise(resolve => {
      const socket = net.connect(port, '127.0.0.1')
      socket.once('connect', () => { socket.destroy(); resolve(true) })
      socket.once('error', () => resolve(false))
    })
    if (ok) return
    await sleep(50)
  }
  throw new Error(`nothing listens on 127.0.0.1:${port} after ${timeoutMs} ms`)
}

/// The router binary, from ILP_ROUTER_BIN.
function routerBinary () {
  const bin = process.env.ILP_ROUTER_BIN
  if (!bin) throw new Error('set ILP_ROUTER_BIN to the ilp-router binary')
  if (!fs.existsSync(bin)) throw new Error(`ILP_ROUTER_BIN=${bin} does not exist`)
  return bin
}

/// Starts `ilp-router run` on a config written to a fresh temporary directory and waits until
/// its BTP port accepts connections. Returns { child, stop() }.
async function startRouter ({ config, btpPort, cores = Number(process.env.INTEROP_ROUTER_CORES || 1) }) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ilp-router-interop-'))
  const file = path.join(dir, 'router.toml')
  fs.writeFileSync(file, config)
  const args = ['run', '--config', file, '--cores', String(cores)]
  // The router's log level (its default is info): INTEROP_ROUTER_LOG_LEVEL=debug.
  if (process.env.INTEROP_ROUTER_LOG_LEVEL) args.push('--log-level', process.env.INTEROP_ROUTER_LOG_LEVEL)
  log('starting router:', args.join(' '))
  const child = spawn(routerBinary(), args, { stdio: ['ignore', 'inherit', 'inherit'] })
  let exited = null
  child.on('exit', (code, signal) => { exited = { code, signal } })
  try {
    await waitForPort(btpPort, 10000)
  } catch (err) {
    child.kill('SIGKILL')
    throw err
  }
  if (exited) throw new Error(`router exited early: ${JSON.stringify(exited)}`)
  return {
    child,
    async stop () {
      if (exited) return exited
      const done = new Promise(resolve => child.once('exit', (code, signal) => resolve({ code, signal })))
      child.kill('SIGTERM')
      const timer = setTimeout(() => child.kill('SIGKILL'), 8000)
      const result = await done
      clearTimeout(timer)
      fs.rmSync(dir, { recursive: true, force: true })
      return result
    }
  }
}

/// The JS reference connector in this process. Rate limit, throughput limit and deduplication
/// are switched off; the `one-to-one` backend with spread 0 converts by asset scale only.
/// `container`, when given, is the connector's dependency container (`reduct`), through which
/// a script can reach its services.
async function startJsConnector ({ ilpAddress, accounts, routes = [], extra = {}, container }) {
  const { createApp } = require('ilp-connector')
  const connector = createApp(Object.assign({
    env: 'test',
    ilpAddress,
    accounts,
    routes,
    backend: 'one-to-one',
    spread: 0,
    store: 'memory',
    // Route broadcasting stays on (it also installs local and configured routes). Accounts that
    // face our router over a static route set sendRoutes/receiveRoutes false, and our router's
    // peer send_routes/receive_routes false; ccp-chain.js exchanges routes with it instead.
    disableMiddleware: ['rateLimit', 'throughput', 'deduplicate'],
    initialConnectTimeout: 200,
    collectDefaultMetrics: false
  }, extra), container)
  await connector.listen()
  return connector
}

/// A plugin wrapper that passes everything through and records every Prepare it sends or
/// receives together with the outcome, for the per-packet amount checks. Peer-protocol packets
/// (`peer.*`: ILDCP, which STREAM asks its link for its address) go through unrecorded.
class RecordingPlugin extends EventEmitter {
  constructor (inner) {
    super()
    this.inner = inner
    this.sent = [] // { amount, destination, fulfilled, code, triggeredBy, message }
    this.received = [] // { amount, destination, fulfilled }
    this.dataHandler = null
    inner.on('connect', () => this.emit('connect'))
    inner.on('disconnect', () => this.emit('disconnect'))
    inner.on('error', err => this.emit('error', err))
  }

  connect (opts) { return this.inner.connect(opts) }
  disconnect () { return this.inner.disconnect() }
  isConnected () { return this.inner.isConnected() }
  sendMoney (amount) { return this.inner.sendMoney(amount) }
  registerMoneyHandler (handler) { return this.inner.registerMoneyHandler(handler) }
  deregisterMoneyHandler () { return this.inner.deregisterMoneyHandler() }

  async sendData (data) {
    const prepare = IlpPacket.deserializeIlpPrepare(data)
    const reply = await this.inner.sendData(data)
    if (!prepare.destination.startsWith('peer.')) {
      const r = reply[0] === IlpPacket.Type.TYPE_ILP_REJECT ? IlpPacket.deserializeIlpReject(reply) : { code: 'fulfill' }
      if (process.env.INTEROP_DEBUG) {
        log(`sent ${prepare.amount} to ${prepare.destination.slice(0, 40)}: ${r.code} ${r.triggeredBy || ''} ${r.message || ''}`)
      }
      this.sent.push({
        amount: BigInt(prepare.amount),
        destination: prepare.destination,
        fulfilled: reply[0] === IlpPacket.Type.TYPE_ILP_FULFILL,
        // For a Reject: its code, who triggered it and its message.
        code: r.code === 'fulfill' ? null : r.code,
        triggeredBy: r.triggeredBy || null,
        message: r.message || null
      })
    }
    return reply
  }

  registerDataHandler (handler) {
    this.dataHandler = handler
    return this.inner.registerDataHandler(async data => {
      const prepare = IlpPacket.deserializeIlpPrepare(data)
      const reply = await handler(data)
      if (process.env.INTEROP_DEBUG) log(`received ${prepare.amount} for ${prepare.destination.slice(0, 40)}: ${reply[0]}`)
      this.received.push({
        amount: BigInt(prepare.amount),
        destination: prepare.destination,
        fulfilled: reply[0] === IlpPacket.Type.TYPE_ILP_FULFILL
      })
      return reply
    })
  }

  deregisterDataHandler () {
    this.dataHandler = null
    return this.inner.deregisterDataHandler()
  }
}

function btpClient (url) {
  const BtpPlugin = require('ilp-plugin-btp')
  return new BtpPlugin({ server: url })
}

/// A decimal string ("1.08") as the exact fraction [num, den] of BigInts.
function decimal (text) {
  const [whole, frac = ''] = text.split('.')
  return [BigInt(whole + frac), 10n ** BigInt(frac.length)]
}

/// Our router's conversion: floor(amount × price_in / price_out × 10^(scale_out − scale_in)),
/// spread 0, exact.
function routerConvert (amount, from, to, rates) {
  const [pin, din] = decimal(rates[from.code])
  const [pout, dout] = decimal(rates[to.code])
  let num = amount * pin * dout
  let den = din * pout
  const shift = to.scale - from.scale
  if (shift >= 0) num *= 10n ** BigInt(shift)
  else den *= 10n ** BigInt(-shift)
  return num / den
}

/// The JS connector's `one-to-one` backend with spread 0: scale only, rounded down.
function jsOneToOne (amount, from, to) {
  const shift = to.scale - from.scale
  return shift >= 0 ? amount * 10n ** BigInt(shift) : amount / 10n ** BigInt(-shift)
}

/// A STREAM receiver (`createServer`) on `plugin`; resolves with the server and a function
/// giving the total received so far.
async function streamReceiver (plugin) {
  const { createServer } = require('ilp-protocol-stream')
  const server = await createServer({ plugin, serverSecret: require('crypto').randomBytes(32) })
  let total = 0n
  server.on('connection', connection => {
    connection.on('stream', stream => {
      stream.setReceiveMax(Infinity)
      stream.on('money', amount => { total += BigInt(amount) })
    })
  })
  return { server, received: () => total }
}

/// Sends `amount` (sender's units) over one STREAM to the receiver's address and secret.
/// `seen`, when given, gets the sender's own address and asset as it learned them over ILDCP
/// from its link (`sourceAccount`, `sourceAssetCode`, `sourceAssetScale`).
async function streamSend (plugin, { destinationAccount, sharedSecret }, amount, seen = null) {
  const { createConnection } = require('ilp-protocol-stream')
  const connection = await createConnection({ plugin, destinationAccount, sharedSecret, slippage: 0.05 })
  if (seen) {
    Object.assign(seen, {
      sourceAccount: connection.sourceAccount,
      sourceAssetCode: connection.sourceAssetCode,
      sourceAssetScale: connection.sourceAssetScale
    })
  }
  const stream = connection.createStream()
  await stream.sendTotal(amount.toString(), { timeout: 20000 })
  const delivered = BigInt(connection.totalDelivered)
  await connection.end()
  return delivered
}

module.exports = {
  log,
  freePort,
  sleep,
  waitForPort,
  startRouter,
  startJsConnector,
  RecordingPlugin,
  btpClient,
  routerConvert,
  jsOneToOne,
  streamReceiver,
  streamSend
}
