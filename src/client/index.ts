/** The typed cinode client: what the GitHub Action and the `cinode` command import. */
export * from './types.js';
export { CinodeApiError, CinodeAbortError, redactKey } from './errors.js';
export { CAPACITY_MESSAGE, INVALID_KEY_MESSAGE, INVALID_SESSION_MESSAGE, NOT_IN_PROD_MESSAGE } from '../api/messages.js';
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
