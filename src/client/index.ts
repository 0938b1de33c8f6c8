/** The typed cinode client: what the GitHub Action and the `cinode` command import. */
export * from './types.js';
export { CinodeApiError, CinodeAbortError, redactKey } from './errors.js';
export { withRetry, backoffDelay, type RetryInfo, type RetryOptions, type Sleep } from './retry.js';
export { ActionsHttpTransport, type HttpTransport, type TransportOptions, type TransportResponse } from './transport.js';
export { CinodeClient, type CinodeClientOptions } from './client.js';
export { lifetimeNote, refusalHint, type KeySource } from './notes.js';
export { keepSession, pingInterval, type KeepEnd, type KeepOptions } from './keep.js';
