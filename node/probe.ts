/** Probe period of the failure detector, as in memberlist's LAN profile. */
export const PROBE_MS = 1000
