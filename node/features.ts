import { Feature } from './certificate.js'

/** Feature bits this build supports and announces in its certificate and handshake. */
export const LOCAL_FEATURES = Feature.rpcTunnel | Feature.capabilities
