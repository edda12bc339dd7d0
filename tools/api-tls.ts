import { readFile } from 'node:fs/promises'
import { apiServerNames, issueApiServerCertificate, loadOrCreateApiCa } from '../node/api-certificate.js'
import { readClusterConfig, type DataDir } from '../node/data-dir.js'
import type { Log } from '../node/log.js'

/** The API's listen address and TLS flags of `mesh start`. */
export interface ApiTlsOptions {
  apiHost: string
  tls?: 'auto'
  tlsCert?: string
  tlsKey?: string
}

function isLoopback (host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\./.test(host)
}

/** The API's TLS key and certificate from --tls-cert/--tls-key or --tls auto; warns when keys would cross a network in clear. */
export async function apiTls (options: ApiTlsOptions, dir: DataDir, log: Log): Promise<{ key: string, cert: string } | undefined> {
  if (options.tlsCert !== undefined && options.tlsKey !== undefined) {
    return { cert: await readFile(options.tlsCert, 'utf8'), key: await readFile(options.tlsKey, 'utf8') }
  }
  if (options.tls === 'auto') {
    const ca = await loadOrCreateApiCa(dir, (await readClusterConfig(dir)).clusterId)
    return await issueApiServerCertificate(ca, apiServerNames(options.apiHost))
  }
  if (!isLoopback(options.apiHost)) {
    log('warn', `the API listens on ${options.apiHost} without TLS: API keys and prompts would cross the network in clear text; pass --tls auto (clients trust the certificate "mesh ca-cert" prints) or --tls-cert and --tls-key`)
  }
  return undefined
}
