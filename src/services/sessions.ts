/**
 * Sessions, as the rest of the service calls them: the session gateway (sessions/gateway.ts, the
 * only code that talks to the device Durable Object) and token minting (sessions/tokens.ts).
 */
export {
  accountChanged,
  addSessionMethods,
  checkSession,
  endAllSessions,
  endSession,
  endSessionsOf,
  reaffirmSession,
  refreshSession,
  startSession,
  updateCurrentDevice,
} from "../sessions/gateway";
export { mintPublicToken, resolveDeviceId } from "../sessions/tokens";
export { endSessionsBefore, listDevices, sessionsOf } from "./devices";
