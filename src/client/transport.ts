/**
 * The HTTP transport behind the client: one GET, its status, headers and body. Tests pass a fake;
 * the default goes through @actions/http-client (what the GitHub Action's toolkit uses).
 */
import { HttpClient } from '@actions/http-client';

export interface TransportResponse {
  status: number;
  headers: Readonly<Record<string, string | string[] | undefined>>;
  body: string;
}

export interface TransportOptions {
  /** Aborted when the request must stop (its timeout, or the caller's cancellation). */
  signal?: AbortSignal;
  /** The request's own timeout, in milliseconds. */
  timeoutMs?: number;
}

export interface HttpTransport {
  /** Sends a GET; rejects only when no answer came (any status is an answer). */
  get(url: string, headers: Record<string, string>, options?: TransportOptions): Promise<TransportResponse>;
}

/** GET over @actions/http-client, without its own retries (the client's retry loop decides). */
export class ActionsHttpTransport implements HttpTransport {
  async get(url: string, headers: Record<string, string>, options: TransportOptions = {}): Promise<TransportResponse> {
    const { 'user-agent': userAgent, ...rest } = headers;
    // One HttpClient per request, so that dispose() (which destroys its agent's sockets) ends
    // exactly this request when it times out or is cancelled.
    const http = new HttpClient(userAgent, [], {
      allowRetries: false,
      keepAlive: false,
      socketTimeout: options.timeoutMs,
    });
    const { signal } = options;
    const onAbort = () => http.dispose();
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      if (signal?.aborted) throw new Error('request cancelled before it was sent');
      const response = await http.get(url, rest);
      const body = await response.readBody();
      return { status: response.message.statusCode ?? 0, headers: response.message.headers, body };
    } finally {
      signal?.removeEventListener('abort', onAbort);
    }
  }
}
