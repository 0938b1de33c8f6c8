/** The typed cinode client: what the GitHub Action and the `cinode` command import. */
export * from './types.js';
export {
  CinodeApiError,
  CinodeAbortError,
  redactKey,
  INVALID_KEY_MSG,
  INVALID_SESSION_MSG,
  INSUFFICIENT_NODES_MSG,
  NOT_IN_PROD_MSG,
} from './errors.js';
export { withRetry, isRetryable, backoffDelay, defaultSleep, type RetryInfo, type RetryOptions, type Sleep } from './retry.js';
export { ActionsHttpTransport, type HttpTransport, type TransportOptions, type TransportResponse } from './transport.js';
export {
  CinodeClient,
  CALL,
  DEFAULT_TIMEOUT_MS,
  DEFAULT_REQUEST_TIMEOUT_MS,
  DEFAULT_USER_AGENT,
  type CallPath,
  type CinodeClientOptions,
} from './client.js';
