/**
 * The errors a call can end with, parsed from the legacy admin.ci bodies (docs/api.md, "Errors").
 * Nothing here imports the server: the client reads only what goes over the wire.
 */
import { CAPACITY_MESSAGE, INVALID_KEY_MESSAGE, INVALID_SESSION_MESSAGE } from '../api/messages.js';
import type { ApiErrorKind } from './types.js';

export const REDACTED = '[REDACTED]';

export interface CinodeApiErrorOptions {
  status?: number;
  retryAfterMs?: number;
  /** The call's path, e.g. `/Node/get`. */
  call?: string;
  cause?: unknown;
  /** No answer, and none will come by waiting (a name that does not resolve, a TLS mismatch). */
  permanent?: boolean;
}

/** A call that failed: the server refused it (`kind` from its answer) or no answer came (`transport`). */
export class CinodeApiError extends Error {
  override readonly name = 'CinodeApiError';
  readonly kind: ApiErrorKind;
  /** The HTTP status of the answer; undefined for `transport`. */
  readonly status?: number;
  /** What the server's `Retry-After` asked for, in milliseconds. */
  readonly retryAfterMs?: number;
  /** The call's path, e.g. `/Node/get`. */
  readonly call?: string;
  /** How many requests were sent before giving up (set by the retry loop). */
  attempts?: number;
  /** A `transport` failure that waiting cannot heal: never retried. */
  readonly permanent: boolean;

  constructor(kind: ApiErrorKind, message: string, options: CinodeApiErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.kind = kind;
    this.status = options.status;
    this.retryAfterMs = options.retryAfterMs;
    this.call = options.call;
    this.permanent = options.permanent === true;
  }
}

/** Node's codes of TLS failures: the client and the server do not speak the same protocol, or the certificate is refused. */
const TLS_CODE = /^(EPROTO|ERR_SSL_|ERR_TLS_|CERT_|UNABLE_TO_|DEPTH_ZERO_SELF_SIGNED_CERT|SELF_SIGNED_CERT_IN_CHAIN|HOSTNAME_MISMATCH)/;

/**
 * What to check when a request got no answer for a reason that retrying cannot heal; undefined
 * for a failure that may pass (a refused connection, a reset, a timeout, a DNS server that did
 * not answer: EAI_AGAIN).
 */
export function unreachableHint(error: unknown): string | undefined {
  const code = typeof error === 'object' && error !== null && 'code' in error ? String((error as { code: unknown }).code) : '';
  if (code === 'ENOTFOUND') return 'the host name does not resolve: check the host in the URL';
  if (TLS_CODE.test(code)) {
    return `TLS failed (${code}): check the URL's scheme (an https:// URL to a server that speaks plain http fails this way) and the server's certificate`;
  }
  return undefined;
}

/**
 * The call was cancelled through its AbortSignal (e.g. the runner's SIGINT while waiting for
 * capacity). Not a CinodeApiError: the server did not refuse anything.
 */
export class CinodeAbortError extends Error {
  override readonly name = 'AbortError';
  constructor(message: string, cause?: unknown) {
    super(message, cause === undefined ? undefined : { cause });
  }
}

/** `key=...` in a URL or text, with the value replaced; also any literal occurrence of `key`. */
export function redactKey(text: string, key?: string): string {
  let out = text.replace(/([?&]key=)[^&#\s]*/gi, `$1${REDACTED}`);
  if (key !== undefined && key.length >= 4) out = out.split(key).join(REDACTED);
  const encoded = key === undefined ? '' : encodeURIComponent(key);
  if (encoded.length >= 4 && encoded !== key) out = out.split(encoded).join(REDACTED);
  return out;
}

/** Reads a header from either a plain record or Node's IncomingHttpHeaders, case-insensitively. */
function headerValue(headers: Readonly<Record<string, string | string[] | undefined>>, name: string): string | undefined {
  const wanted = name.toLowerCase();
  for (const [k, v] of Object.entries(headers)) {
    if (k.toLowerCase() === wanted) return Array.isArray(v) ? v[0] : v;
  }
  return undefined;
}

/** `Retry-After` as milliseconds: delay-seconds or an HTTP date (relative to `now`). */
function parseRetryAfter(value: string | undefined, now: number): number | undefined {
  if (value === undefined) return undefined;
  const text = value.trim();
  if (/^\d+$/.test(text)) return Number(text) * 1000;
  const date = Date.parse(text);
  if (Number.isNaN(date)) return undefined;
  return Math.max(0, date - now);
}

/** The body parsed as JSON, or undefined when it is not JSON. */
export function parseJson(body: string): { value: unknown } | undefined {
  try {
    return { value: JSON.parse(body) as unknown };
  } catch {
    return undefined;
  }
}

/** The `msg` of a `{"msg": "..."}` body, if it is one. */
function messageOf(json: { value: unknown } | undefined): string | undefined {
  const value = json?.value;
  if (typeof value === 'object' && value !== null && !Array.isArray(value)) {
    const msg = (value as Record<string, unknown>).msg;
    if (typeof msg === 'string') return msg;
  }
  return undefined;
}

/** A short, printable excerpt of a body for error messages. */
export function snippet(body: string, max = 200): string {
  const flat = body.replace(/\s+/g, ' ').trim();
  if (flat === '') return '(empty body)';
  return flat.length > max ? `${flat.slice(0, max)}...` : flat;
}

export interface Answer {
  status: number;
  headers: Readonly<Record<string, string | string[] | undefined>>;
  body: string;
}

/**
 * The error an answer that is not a 2xx stands for (docs/api.md's error table). `now` resolves a
 * `Retry-After` given as a date.
 */
export function errorFromAnswer(call: string, answer: Answer, now: number): CinodeApiError {
  const { status, body } = answer;
  const json = parseJson(body);
  const msg = messageOf(json);
  const retryAfterMs = parseRetryAfter(headerValue(answer.headers, 'retry-after'), now);
  const options: CinodeApiErrorOptions = { status, call, retryAfterMs };
  const fallback = `HTTP ${status} from ${call}: ${snippet(body)}`;

  if (status === 503 && json === undefined) {
    return new CinodeApiError('capacity', body.trim() === '' ? CAPACITY_MESSAGE : snippet(body), options);
  }
  if (status >= 500) return new CinodeApiError('server', msg ?? fallback, options);
  switch (status) {
    case 401:
      return new CinodeApiError('invalid-key', msg ?? INVALID_KEY_MESSAGE, options);
    case 403:
      if (msg === INVALID_KEY_MESSAGE) return new CinodeApiError('invalid-key', msg, options);
      if (msg === INVALID_SESSION_MESSAGE) return new CinodeApiError('invalid-session', msg, options);
      return new CinodeApiError('policy', msg ?? fallback, options);
    case 409:
      return new CinodeApiError('not-active', msg ?? fallback, options);
    case 429:
      return new CinodeApiError('rate-limit', msg ?? fallback, options);
  }
  // 400, and any other 4xx (404: the url names no cinode endpoint): the request itself is wrong.
  if (status >= 400) return new CinodeApiError('bad-request', msg ?? fallback, options);
  // 1xx/3xx that were not followed: nothing a client can use.
  return new CinodeApiError('server', fallback, options);
}

/**
 * A 200 whose body is not the expected shape but a legacy refusal: Duffy v2 answered most errors
 * with 200 and `{"msg": ...}`, and the capacity shortfall with 200 and plain text. Undefined when
 * the body is neither (the caller reports an unexpected answer).
 */
export function legacyRefusal(call: string, status: number, body: string): CinodeApiError | undefined {
  const json = parseJson(body);
  const options: CinodeApiErrorOptions = { status, call };
  if (json === undefined) {
    return body.includes(CAPACITY_MESSAGE) ? new CinodeApiError('capacity', CAPACITY_MESSAGE, options) : undefined;
  }
  const msg = messageOf(json);
  if (msg === undefined) return undefined;
  if (msg === INVALID_KEY_MESSAGE) return new CinodeApiError('invalid-key', msg, options);
  if (msg === INVALID_SESSION_MESSAGE) return new CinodeApiError('invalid-session', msg, options);
  if (msg.includes(CAPACITY_MESSAGE)) return new CinodeApiError('capacity', msg, options);
  // Any other legacy refusal (fail-node limit, quota, ...) is the server saying no: not retried.
  return new CinodeApiError('policy', msg, options);
}
